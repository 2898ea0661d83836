"""What every task shares: retry only transient failures; cache only what the world still has.

Caching is expressed once, on each task, by `world_checked(...)` as its `cache_key_fn`. The key
is the step, the backend, a hash of the store's address and the content (image hash, lineage
key, manifest hash), so a result cached by a `local` run is never served to a `gcp` run (or
one store's to another's) even when they share one results store. Before answering, the key
function checks the world: when the thing a cached result points to is gone (a deleted model,
an image missing from the registry) it expires that result, so Prefect runs the step and
records the fresh one. A lost cache costs one world check; a stale one never stands in for a
missing model. The backends' own get-before-create checks stay the truth either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import State

from core.contracts import Backend, PipelineError, TransientError

Parameters = dict[str, Any]
CacheKeyFn = Callable[[TaskRunContext, Parameters], str | None]

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


def cache_key(step: str, backend: Backend, *content: str) -> str:
    """`<step>-<backend>-<hash>`: the hash covers the store's address and the content, so the
    key is safe as a file name and never exposes a bucket or a path."""
    material = "\0".join((backend.name, backend.store.root_uri, *content))
    return f"{step}-{backend.name}-{hashlib.sha256(material.encode()).hexdigest()[:32]}"


def world_checked(
    step: str,
    content: Callable[[Parameters], Sequence[str]],
    still_there: Callable[[Parameters], bool],
) -> CacheKeyFn:
    """A `cache_key_fn` for a step whose result points at something in the world.

    `content(parameters)` names what the result depends on; `still_there(parameters)` is the
    cheap world check (the model's manifest, the image in the registry…). The task's
    parameters must include `backend`.
    """

    def key(context: TaskRunContext, parameters: Parameters) -> str | None:
        try:
            key_ = cache_key(step, parameters["backend"], *content(parameters))
            present = still_there(parameters)
        except (PipelineError, httpx.TransportError, ConnectionError) as error:
            get_run_logger().warning("%s runs uncached: the world check failed (%s)", step, error)
            return None
        if not present:
            expire_cached_result(context, key_)
        return key_

    return key


def expire_cached_result(context: TaskRunContext, key: str) -> None:
    """Overwrite a cached result with an already-expired record: Prefect then treats the key as
    a miss, runs the step, and records its fresh result under the same key."""
    store = context.result_store
    if store.exists(key):
        store.write(obj=None, key=key, expiration=datetime.now(UTC))


RETRY_OPTIONS: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS_S,
    "retry_condition_fn": retry_only_transient,
}

# Results of cached steps are persisted (to the results store) so a later run can reuse them.
CACHED_TASK_OPTIONS: dict[str, Any] = {**RETRY_OPTIONS, "persist_result": True}

# Starting a server or calling it is an action on the live world, never a cacheable result.
UNCACHED_TASK_OPTIONS: dict[str, Any] = {**RETRY_OPTIONS, "cache_policy": NO_CACHE}
