"""What every task shares: retry only transient failures, cache on a key the flow computes.

The flow derives each cache key from content (image digest, lineage key, manifest hash) and
checks the world first: when the resource a cached result points to is gone, it asks for a
fresh run (`refresh_cache`), so a stale cache can never stand in for a missing model.
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State

from core.contracts import TransientError

RETRIES = 3
RETRY_DELAYS_S = [2, 10, 30]
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    httpx.TransportError,
    ConnectionError,
)


def is_transient(error: object) -> bool:
    """Errors worth a retry: throttling, unavailability, dropped connections — nothing else."""
    return isinstance(error, TRANSIENT_ERRORS)


def retry_only_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect `retry_condition_fn`: validation, quota and permission errors fail at once."""
    return is_transient(state.data)


def key_from_cache_key_argument(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Prefect `cache_key_fn`: the flow passes the content key as the `cache_key` argument."""
    return str(parameters["cache_key"])


CACHED_TASK_OPTIONS: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS_S,
    "retry_condition_fn": retry_only_transient,
    "cache_key_fn": key_from_cache_key_argument,
    "persist_result": True,
}

# Starting a server or calling it is an action on the live world, never a cacheable result.
UNCACHED_TASK_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS_S,
    "retry_condition_fn": retry_only_transient,
}
