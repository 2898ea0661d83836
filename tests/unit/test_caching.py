"""Caching on real Prefect: keyed on backend + store + content, and never past a deleted thing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness

from core.contracts import Backend
from tasks.policy import CACHED_TASK_OPTIONS, Parameters, cache_key, world_checked

WORLD: set[str] = set()  # what "exists" in the toy world, by content name
RUNS: list[str] = []  # every time the task body really ran


def toy_backend(name: str, root: str) -> Backend:
    parts: dict[str, Any] = dict.fromkeys(
        ("provisioner", "builder", "runner", "server", "teardown"), None
    )
    return Backend(name=name, store=SimpleNamespace(root_uri=root), **parts)  # type: ignore[arg-type]


def _content(parameters: Parameters) -> tuple[str]:
    return (parameters["thing"],)


def _exists(parameters: Parameters) -> bool:
    return parameters["thing"] in WORLD


@task(cache_key_fn=world_checked("toy", _content, _exists), **CACHED_TASK_OPTIONS)
def make_thing(backend: Backend, thing: str) -> str:
    RUNS.append(f"{backend.name}:{thing}")
    WORLD.add(thing)
    return f"{thing}@{backend.name}"


@flow
def pipeline(backend: Backend, thing: str) -> str:
    state = make_thing(backend, thing, return_state=True)
    return f"{state.name}:{state.result()}"


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


def test_keys_name_the_backend_hide_the_store_and_separate_stores() -> None:
    local = cache_key("train", toy_backend("local", "file:///srv/store"), "k1")
    assert local.startswith("train-local-") and "/srv/store" not in local
    assert local != cache_key("train", toy_backend("gcp", "file:///srv/store"), "k1")
    assert local != cache_key("train", toy_backend("local", "file:///srv/other"), "k1")
    assert local != cache_key("train", toy_backend("local", "file:///srv/store"), "k2")


def test_cached_until_the_thing_is_gone_and_never_across_backends(
    harness: None, tmp_path: Path
) -> None:
    WORLD.clear()
    RUNS.clear()
    local = toy_backend("local", (tmp_path / "store").as_uri())

    assert pipeline(local, "model-a") == "Completed:model-a@local"
    assert pipeline(local, "model-a") == "Cached:model-a@local"
    WORLD.discard("model-a")  # someone deleted it: the cache must not stand in for it
    assert pipeline(local, "model-a") == "Completed:model-a@local"
    assert pipeline(local, "model-a") == "Cached:model-a@local"
    # Same content, same shared results store, another backend: its own run, its own result.
    gcp = toy_backend("gcp", (tmp_path / "store").as_uri())
    assert pipeline(gcp, "model-a") == "Completed:model-a@gcp"
    assert RUNS == ["local:model-a", "local:model-a", "gcp:model-a"]
