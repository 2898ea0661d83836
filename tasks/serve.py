"""Deploy: start a candidate server on the verified model; promote it only after smoke."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.contracts import Endpoint, ModelServer
from tasks.policy import UNCACHED_TASK_OPTIONS


@task(name="deploy", **UNCACHED_TASK_OPTIONS)
def deploy(server: ModelServer, prefix: str, served_model_name: str, deadline_s: float) -> Endpoint:
    """The previous server keeps serving while the candidate starts."""
    endpoint = server.deploy(prefix, served_model_name, deadline_s)
    get_run_logger().info(
        "candidate %s server ready at %s (model %r)",
        endpoint.engine,
        endpoint.base_url,
        endpoint.model,
    )
    return endpoint


@task(name="promote", **UNCACHED_TASK_OPTIONS)
def promote(server: ModelServer, endpoint: Endpoint) -> Endpoint:
    """Traffic moves to the candidate; the previous server is retired."""
    server.promote(endpoint)
    get_run_logger().info("now serving %r at %s", endpoint.model, endpoint.base_url)
    return endpoint
