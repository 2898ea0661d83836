"""Smoke test: the served endpoint must answer the codelab prompt with emoji."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.contracts import Endpoint, ModelServer
from core.smoke import SmokeResult, run_smoke_test
from tasks.policy import UNCACHED_TASK_OPTIONS


@task(name="smoke", **UNCACHED_TASK_OPTIONS)
def smoke_test(
    server: ModelServer, endpoint: Endpoint, prompt: str, max_tokens: int, timeout_s: float
) -> SmokeResult:
    """Calls the candidate directly (its own URL), before any traffic moves to it."""
    headers = server.request_headers(endpoint)
    result = run_smoke_test(endpoint, prompt, max_tokens, timeout_s, headers=headers)
    get_run_logger().info("smoke answer in %.2f s: %s", result.latency_s, result.answer)
    return result
