"""Alerts end to end: `bootstrap` creates the webhook block and the automation on a real
`prefect server`; a gate-rejected run makes the server POST exactly one Slack-style message,
naming the run, the failed step and the reason, to a local HTTP receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.contracts import VerificationFailed
from deployments.alerts import AUTOMATION_NAME, BLOCK_NAME, AlertSettings
from deployments.bootstrap import bootstrap
from flows.finetune import finetune_pipeline
from tests.flow.prefect_server import running_server
from tests.flow.test_pipeline_local import make_settings

MESSAGE_DEADLINE_S = 120
QUIET_AFTER_S = 10  # time for a duplicate to arrive, if the automation fired twice


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook endpoint on 127.0.0.1 keeping every JSON body it receives."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/emoji", received
    finally:
        server.shutdown()


@pytest.fixture
def prefect_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real `prefect server` (its triggers service runs the automations) as this
    process's API — in the environment too, for threads that carry no Prefect context."""
    with (
        running_server(tmp_path / "home", tmp_path / "server.log") as (api_url, _),
        temporary_settings(updates={PREFECT_API_URL: api_url}),
    ):
        monkeypatch.setenv("PREFECT_API_URL", api_url)
        yield api_url
        EventsWorker.drain_all()  # deliver this test's events while the server listens


def test_a_rejected_run_sends_exactly_one_message_naming_run_step_and_reason(
    prefect_api: str,
    tmp_path: Path,
    receiver: tuple[str, list[dict[str, Any]]],
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = receiver
    assert "alerts" not in " ".join(bootstrap()), "no URL set: no alerts"
    monkeypatch.setenv("PIPELINE_ALERTS__WEBHOOK_URL", url)
    first = bootstrap()
    assert first[f"automation {AUTOMATION_NAME}"] == "created"
    assert first[f"block custom-webhook/{BLOCK_NAME}"] == "created"
    again = bootstrap()
    assert again[f"automation {AUTOMATION_NAME}"] == "unchanged"
    assert again[f"block custom-webhook/{BLOCK_NAME}"] == "unchanged"

    settings = make_settings(tmp_path / "store", tiny_model_dir, sample_dataset_path)
    rejecting = settings.model_copy(
        update={"quality": settings.quality.model_copy(update={"max_eval_loss": 1e-9})}
    )
    with pytest.raises(VerificationFailed):
        finetune_pipeline(rejecting)
    EventsWorker.drain_all()
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["emoji-finetune"]))
        )

    deadline = time.monotonic() + MESSAGE_DEADLINE_S
    while not received and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(QUIET_AFTER_S)

    assert len(received) == 1, received
    text = received[0]["text"]
    assert f"run: {run.name} ({run.id})" in text
    assert "failed step: verify" in text
    assert "reason: " in text and "VerificationFailed" in text and "eval_loss" in text
    assert "failed" in text.splitlines()[0]


def test_a_webhook_url_that_is_not_http_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_ALERTS__WEBHOOK_URL", "hooks.slack.com/services/x")
    with pytest.raises(ValueError, match="PIPELINE_ALERTS__WEBHOOK_URL"):
        AlertSettings()
