"""The training execution's Cloud Logging lines in the run's logs, and its PROGRESS lines as
the run's progress: against the fake's `entries.list`, which lags, pages, repeats entries at
the `timestamp>=` instant and refuses filters it does not understand, as Google's does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from core.contracts import Progress
from core.job_progress import PROGRESS_MARKER, parse_progress
from tasks.backends.gcp.clients import GoogleClients
from tests.contract.test_gcp_requests import JOB_IMAGE, KEY, backend_for, job_spec
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud
from tests.fakes.logging_api import JOB_LINES

LIST = "logging.entries.list"
TEXT_LINES = [line for line in JOB_LINES if not line.startswith(PROGRESS_MARKER)]
PROGRESS_SEEN = [parse_progress(line) for line in JOB_LINES if line.startswith(PROGRESS_MARKER)]


@pytest.fixture
def world(
    gcs_emulator: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGoogleCloud]:
    monkeypatch.setenv("HF_TOKEN", "hf_jobLogsSecret42")
    with fake_google_cloud(gcs_emulator, bootstrapped=False) as cloud:
        cloud.fake.on_execution = lambda args: cloud.publish_model(tiny_model_dir, args)
        cloud.fake.work_polls = 3  # a line per read while it runs, the rest in one instant
        cloud.fake.logs.lag_s = 0.1  # entries show up after the execution has moved on
        cloud.fake.logs.page_size = 2
        yield cloud


def train(
    world: FakeGoogleCloud, dataset: Path, meanwhile: Callable[[], None] = lambda: None
) -> tuple[list[str], list[Progress]]:
    """One training run (`meanwhile` runs at its first progress report); what it logged and
    the progress it reported."""
    backend = backend_for(world, log_tail_s=1.0)
    image = backend.builder.build(JOB_IMAGE, on_log=lambda _: None)
    logs: list[str] = []
    progress: list[Progress] = []

    def report(update: Progress) -> None:
        if not progress:
            meanwhile()
        progress.append(update)

    outcome = backend.runner.run(image, job_spec(KEY, dataset), logs.append, report)
    assert not outcome.reused and outcome.output_uri.endswith(f"models/{KEY}")
    return logs, progress


def job_lines(logs: list[str]) -> list[str]:
    return [line for line in logs if line in JOB_LINES]


def elapsed(progress: list[Progress]) -> list[Progress]:
    return [p for p in progress if p.message.endswith("task(s) running")]


def test_the_executions_lines_stream_in_order_once_and_progress_lines_drive_progress(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    logs, progress = train(world, sample_dataset_path)

    assert job_lines(logs) == TEXT_LINES, "every line, in order, none twice, none missing"
    first = len(elapsed(progress))
    assert progress[first:] == PROGRESS_SEEN, "after the first PROGRESS line, only those"
    assert elapsed(progress) == progress[:first], "elapsed time only until then"
    bodies = [call.body for call in world.fake.calls(LIST)]
    assert any("pageToken" in body for body in bodies), "a poll followed nextPageToken"
    assert not [line for line in logs if "job logs unavailable" in line]


@pytest.mark.parametrize(("code", "delivered"), [(403, False), (429, True)])
def test_without_logs_training_still_succeeds_with_one_line_saying_so(
    world: FakeGoogleCloud, sample_dataset_path: Path, code: int, delivered: bool
) -> None:
    world.fake.inject(LIST, code, "The caller does not have permission", times=2)

    logs, progress = train(world, sample_dataset_path)

    unavailable = [line for line in logs if line.startswith("job logs unavailable:")]
    assert len(unavailable) == 1 and str(code) in unavailable[0]
    if delivered:  # throttled: asked again at the next poll, and nothing is lost
        assert job_lines(logs) == TEXT_LINES
    else:  # refused: never asked again; progress is the elapsed share of the wait
        assert job_lines(logs) == [] and len(world.fake.calls(LIST)) == 1
        assert progress and elapsed(progress) == progress


def test_the_filter_names_this_execution_only(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    other = f"{world.names.job}/executions/emoji-finetune-concurrent"

    def other_execution_prints() -> None:  # at the same time, in the same job
        world.fake.logs.job_lines = ("a line of another execution",)
        world.fake.logs.started(other)
        world.fake.logs.job_lines = JOB_LINES

    logs, _ = train(world, sample_dataset_path, other_execution_prints)

    assert "a line of another execution" not in logs
    assert job_lines(logs) == TEXT_LINES
    (execution,) = [name for name in world.executions() if name != other]
    execution_id = execution.rsplit("/", 1)[1]
    for call in world.fake.calls(LIST):
        assert f'labels."run.googleapis.com/execution_name"="{execution_id}"' in call.body["filter"]


def entries_list(world: FakeGoogleCloud, **body: Any) -> dict[str, Any]:
    logging = GoogleClients(world.project, {"*": world.url}, invoker="").logging()
    request = {"resourceNames": [f"projects/{world.project}"], **body}
    return logging.entries().list(body=request).execute()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "body",
    [
        {"filter": 'textPayload:"loss"'},  # valid for Google, not understood by the fake
        {"filter": 'timestamp>="yesterday"'},
        {"filter": 'resource.type>="cloud_run_job"'},
        {"orderBy": "severity"},
        {"pageToken": "not-a-token"},
        {"pageSize": "many"},
        {"filters": 'resource.type="cloud_run_job"'},  # no such field (discovery document)
    ],
)
def test_the_fake_rejects_what_it_cannot_answer_as_google_would(
    world: FakeGoogleCloud, body: dict[str, Any]
) -> None:
    world.fake.enable_all()
    with pytest.raises(HttpError) as raised:
        entries_list(world, **body)
    assert raised.value.status_code == 400
    assert b"INVALID_ARGUMENT" in raised.value.content
