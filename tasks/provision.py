"""Provision: make sure the store exists (on GCP: check that bootstrap made what runs need)."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.contracts import Backend, ProvisionReport
from tasks.policy import CACHED_TASK_OPTIONS, Parameters, world_checked


def _nothing_left_to_create(parameters: Parameters) -> bool:
    """The provisioner's cheap reads: bucket, registry, secret… all there and current."""
    backend: Backend = parameters["backend"]
    return backend.provisioner.is_ready()


provisioned_key = world_checked("provision", lambda _: (), _nothing_left_to_create)


@task(name="provision", cache_key_fn=provisioned_key, **CACHED_TASK_OPTIONS)
def provision(backend: Backend) -> ProvisionReport:
    """Idempotent: get → create if absent; a second run changes nothing."""
    logger = get_run_logger()
    report = backend.provisioner.ensure(on_log=logger.info)
    logger.info(
        "provisioned %s (created: %s)", report.store_uri, ", ".join(report.created) or "nothing"
    )
    return report
