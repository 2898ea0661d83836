"""GPU quota: stop a run whose region has no GPU quota before it builds or trains anything."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.contracts import Backend, ConfigurationError, GpuQuota
from tasks.policy import UNCACHED_TASK_OPTIONS


@task(name="gpu-quota", **UNCACHED_TASK_OPTIONS)
def check_gpu_quota(backend: Backend) -> GpuQuota | None:
    """Never cached: a quota can be lowered between runs. 0 → ConfigurationError (naming the
    quota, the region and the fix); unreadable → one warning, and the run goes on."""
    quota = backend.provisioner.gpu_quota()
    if quota is None:
        return None  # the local backend: no cloud quota
    enough, line = quota.verdict()
    if enough is False:
        raise ConfigurationError(line)
    logger = get_run_logger()
    (logger.info if enough else logger.warning)(line)
    return quota
