"""Provision: make sure the store (and, on GCP, everything around it) exists."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.contracts import Provisioner, ProvisionReport
from tasks.policy import CACHED_TASK_OPTIONS


@task(name="provision", **CACHED_TASK_OPTIONS)
def provision(provisioner: Provisioner, cache_key: str) -> ProvisionReport:
    """Idempotent: get → create if absent; a second run changes nothing."""
    logger = get_run_logger()
    report = provisioner.ensure(on_log=logger.info)
    logger.info(
        "provisioned %s (created: %s)", report.store_uri, ", ".join(report.created) or "nothing"
    )
    return report
