"""Steps 5 and 6, shared by a new model and a rollback: start a candidate server next to the
live one and smoke-test it; a candidate that fails is discarded and never gets traffic."""

from __future__ import annotations

from prefect import get_run_logger

from core.contracts import Backend, Endpoint
from core.smoke import SmokeResult
from flows.settings import PipelineSettings
from flows.steps import StepRecorder
from tasks.serve import deploy
from tasks.smoke import smoke_test


def deploy_and_smoke_test(
    step: StepRecorder, backend: Backend, settings: PipelineSettings, model_prefix: str
) -> tuple[Endpoint, SmokeResult]:
    """The candidate's endpoint and its smoke answer; traffic has not moved yet."""
    serving, server = settings.serving, backend.server
    name = settings.model.served_model_name
    endpoint = step(deploy, server, model_prefix, name, serving.startup_timeout_s)
    try:
        smoke = step(
            smoke_test, server, endpoint, serving.smoke_prompt, serving.max_tokens,
            serving.smoke_timeout_s,
        )  # fmt: skip
    except BaseException:
        get_run_logger().warning("smoke test failed: %s", server.discard(endpoint))
        raise
    return endpoint, smoke
