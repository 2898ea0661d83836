"""The progress bar is fed from backend reader threads: it must reach the task's own API
there, and a failed update must never kill the thread (a dead reader stops draining the
job's output)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from core.contracts import Progress
from tasks.progress import ProgressReporter


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


def report_from_thread(reporter: ProgressReporter, *reports: Progress) -> bool:
    """Call the reporter like a reader thread does; True when the thread ended normally."""
    ended: list[bool] = []

    def pump() -> None:
        for report in reports:
            reporter(report)
        ended.append(True)

    thread = threading.Thread(target=pump)
    thread.start()
    thread.join(timeout=30)
    return ended == [True]


def artifact_progress(artifact_id: UUID) -> float | None:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    return next((a.data for a in artifacts if a.id == artifact_id), None)  # type: ignore[return-value]


def test_updates_from_a_reader_thread_reach_the_tasks_artifact() -> None:
    @task
    def step() -> UUID:
        reporter = ProgressReporter("train-progress", "training", get_run_logger())
        assert report_from_thread(reporter, Progress(30, 100), Progress(100, 100))
        return reporter._artifact

    @flow
    def pipeline() -> UUID:
        return step()

    assert artifact_progress(pipeline()) == 100.0


def test_a_failed_update_is_logged_once_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @task
    def step() -> bool:
        reporter = ProgressReporter("train-progress", "training", get_run_logger())
        with get_client(sync_client=True) as client:
            client.delete_artifact(reporter._artifact)  # e.g. a cleanup racing the step
        return report_from_thread(reporter, Progress(50, 100), Progress(100, 100))

    @flow
    def pipeline() -> bool:
        return step()

    with caplog.at_level(logging.WARNING):
        assert pipeline() is True
    warnings = [r for r in caplog.records if "progress bar not updated" in r.getMessage()]
    assert len(warnings) == 1
