"""Retries only for transient failures, checked with real Prefect task runs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness

from core.contracts import ConfigurationError, TransientError, VerificationFailed
from tasks.policy import UNCACHED_TASK_OPTIONS, is_transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransientError("503"), True),
        (httpx.ConnectError("refused"), True),
        (ConnectionResetError(), True),
        (ConfigurationError("bad"), False),
        (VerificationFailed("x", ["nan"]), False),
        (PermissionError("denied"), False),
        (ValueError("bug"), False),
    ],
)
def test_transient_classification(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


def _flaky(error: Exception, failures: int) -> tuple[list[int], object]:
    calls: list[int] = []

    @task(**{**UNCACHED_TASK_OPTIONS, "retry_delay_seconds": 0})
    def step() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    @flow
    def pipeline() -> str:
        return step()

    return calls, pipeline


def test_transient_failure_is_retried(harness: None) -> None:
    calls, pipeline = _flaky(TransientError("HTTP 503"), failures=2)
    assert pipeline() == "done"  # type: ignore[operator]
    assert len(calls) == 3


def test_permanent_failure_is_not_retried(harness: None) -> None:
    calls, pipeline = _flaky(ConfigurationError("quota exceeded: ask for more"), failures=5)
    with pytest.raises(ConfigurationError, match="quota"):
        pipeline()  # type: ignore[operator]
    assert len(calls) == 1
