"""Provision: make sure the store (and, on GCP, everything around it) exists."""

from __future__ import annotations

from prefect import get_run_logger, task

from tasks.backends.base import ArtifactStore, StoreLocation
from tasks.policy import CACHED_TASK_OPTIONS


@task(name="provision", **CACHED_TASK_OPTIONS)
def provision(store: ArtifactStore, cache_key: str) -> StoreLocation:
    """Idempotent: get → create if absent; a second run changes nothing."""
    location = store.ensure_ready()
    verb = "created" if location.created else "already present"
    get_run_logger().info("store %s: %s", verb, location.uri)
    return location
