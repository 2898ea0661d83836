"""The unchanged flow on backend=gcp: real Google client libraries, real Prefect, offline.

Google's APIs are the local fake (tests/fakes/google_apis.py) in front of the real GCS
emulator. The "training execution" writes a real tiny model sealed with a manifest into the
bucket, so verification really reads it back from GCS; the "Cloud Run service" URL is a real
`transformers serve` of that model, so the smoke test really asks it for emoji.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import emoji
import pytest
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from core.contracts import Endpoint, SmokeTestFailed, TrainingFailed
from flows.finetune import PipelineResult, finetune_pipeline
from flows.parameters import PipelineParameters
from tasks.backends.gcp.errors import QuotaExceeded
from tasks.backends.local.provision import LocalProvisioner
from tasks.backends.local.server import LocalModelServer
from tasks.backends.local.store import LocalFolderStore
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud

HF_TOKEN = "hf_gcpTestSecretValue0123456789"
CACHED_STEPS = ("build", "train", "verify")
RUN_JOB = "run.projects.locations.jobs.run"


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="module")
def served_model(
    tuned_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoint]:
    """What the Cloud Run service would serve: the tuned tiny model, as `emoji-gemma`, for real."""
    store = LocalFolderStore(tmp_path_factory.mktemp("served"))
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    shutil.copytree(tuned_model_dir, store.path("models/tiny"))
    server = LocalModelServer(store, engine="transformers", host="127.0.0.1", port=0)
    endpoint = server.deploy("models/tiny", "emoji-gemma", 180)
    yield endpoint
    server.discard(endpoint)


@pytest.fixture
def world(
    gcs_emulator: str,
    served_model: Endpoint,
    tuned_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeGoogleCloud]:
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    with fake_google_cloud(gcs_emulator) as cloud:
        # Endpoint overrides come from the environment only, never from a run's parameters.
        monkeypatch.setenv("PIPELINE_GCP__API_ENDPOINTS", json.dumps({"*": cloud.url}))
        cloud.fake.service_url = served_model.base_url
        cloud.fake.url_for_tag = lambda tag: served_model.base_url
        cloud.fake.on_execution = lambda args: cloud.publish_model(tuned_model_dir, args)
        yield cloud


def make_settings(
    world: FakeGoogleCloud, base_model: Path, dataset: Path, **training: Any
) -> PipelineParameters:
    return PipelineParameters(
        backend="gcp",
        model={"base_model": str(base_model)},
        data={"dataset": str(dataset), "sample_size": 96, "eval_size": 8},
        training={"max_steps": 6, "max_length": 96, "timeout_s": 600, **training},
        serving={"startup_timeout_s": 120},
        gcp={"project": world.project, "poll_interval_s": 0.05},
    )


def states(result: PipelineResult) -> dict[str, str]:
    return {step.name: step.state for step in result.steps}


def service_traffic(world: FakeGoogleCloud) -> list[tuple[str, int]]:
    service = world.fake.resource(world.names.service)
    return [(t.get("revision", ""), int(t.get("percent", 0))) for t in service["traffic"]]


def all_log_text() -> str:
    with get_client(sync_client=True) as client:
        return "\n".join(log.message for log in client.read_logs())


class _NoEmoji(BaseHTTPRequestHandler):
    """A server that answers like a badly trained model: text, no emoji."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"choices": [{"message": {"content": "banana soup"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def no_emoji_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoEmoji)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_flow_on_gcp_serves_a_verified_model_and_a_rerun_changes_nothing(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(world, tiny_model_dir, sample_dataset_path)

    first = finetune_pipeline(settings)

    assert emoji.emoji_count(first.answer) > 0
    assert first.model_uri == f"gs://{world.names.bucket}/models/{first.lineage_key}"
    assert states(first)["train"] == "Completed"
    assert first.kept_serving, "on gcp a model that passed smoke takes the traffic"
    assert f"models/{first.lineage_key}/MANIFEST.json" in world.objects("models/")
    assert world.objects("inputs/"), "the local base model and dataset were staged in the bucket"
    assert service_traffic(world) == [(first.endpoint.server_id, 100)]
    assert len(world.fake.calls(RUN_JOB)) == 1

    before = len(world.fake.requests)
    second = finetune_pipeline(settings)

    assert second.lineage_key == first.lineage_key
    assert all(states(second)[step] == "Cached" for step in CACHED_STEPS), states(second)
    assert [r.path for r in world.fake.requests[before:] if r.mutating] == []
    assert service_traffic(world) == [(first.endpoint.server_id, 100)]
    assert HF_TOKEN not in all_log_text() + capsys.readouterr().out + capsys.readouterr().err


def test_a_failed_candidate_never_takes_traffic(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    no_emoji_server: str,
) -> None:
    live = finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))
    serving = service_traffic(world)

    world.fake.execution_mode = "fail"
    with pytest.raises(TrainingFailed, match=r"logs: https://console\.cloud\.google\.com"):
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path, lora_r=8))
    assert service_traffic(world) == serving, "failed training: nothing deployed"
    assert world.fake.calls("run.projects.locations.services.patch") == []

    world.fake.execution_mode = "succeed"
    world.fake.url_for_tag = lambda tag: no_emoji_server
    with pytest.raises(SmokeTestFailed, match="no emoji"):
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path, lora_r=4))
    assert service_traffic(world) == [(live.endpoint.server_id, 100)], "failed smoke: traffic stays"
    tags = [t.get("tag") for t in world.fake.resource(world.names.service)["traffic"]]
    assert tags == [f"m-{live.lineage_key[:12]}"], "the discarded candidate lost its tag"


def test_transient_errors_are_retried_and_quota_errors_are_not(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    world.fake.inject(RUN_JOB, 503, "The service is currently unavailable.")
    finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))
    assert len(world.fake.calls(RUN_JOB)) == 2, "one 503, then the retry started the execution"

    world.fake.inject(
        RUN_JOB,
        429,
        "Quota exceeded for quota metric 'Total Nvidia L4 GPU allocation, per project per region'",
        times=5,
    )
    with pytest.raises(QuotaExceeded) as raised:
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path, lora_r=8))
    message = str(raised.value)
    assert world.project in message and "europe-west1" in message and "quotas" in message
    assert len(world.fake.calls(RUN_JOB)) == 3, "a quota error is not retried"
