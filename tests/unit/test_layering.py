"""Imports point down only: flows → tasks → tasks/backends → core; job_image/ stands alone.

A few lines over `ast`, so a module that reaches upward (or a core module that pulls in
Prefect or a cloud SDK) fails here, naming the file, the line and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# Higher layers may import lower ones, never the reverse.
LAYERS = {"core": 0, "tasks.backends": 1, "tasks": 2, "flows": 3}
PROJECT_PACKAGES = ("core", "tasks", "flows", "deployments", "demo")
# Only the one place that picks a backend may import a backend's implementation.
BACKEND_PICKER = "flows/wiring.py"
BACKEND_IMPLEMENTATIONS = ("tasks.backends.local", "tasks.backends.gcp")
BACKEND_SHARED = ("tasks.backends.gcp.config",)  # settings types, no client libraries


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name (longest matching prefix), None outside them."""
    matches = [
        (len(prefix), rank)
        for prefix, rank in LAYERS.items()
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1] if matches else None


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every absolute import in a file, lazy ones included."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO_ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("core", "tasks", "flows"), ids=module_name)
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    own = layer_of(module_name(path))
    assert own is not None
    upward = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {target}"
        for line, target in imports_of(path)
        if (rank := layer_of(target)) is not None and rank > own
    ]
    assert not upward, "imports must point down (flows → tasks → backends → core): " + "; ".join(
        upward
    )


@pytest.mark.parametrize("path", python_files("core"), ids=module_name)
def test_core_stays_free_of_prefect_and_cloud_sdks(path: Path) -> None:
    forbidden = ("prefect", "google", "tasks", "flows")
    found = [
        f"line {line}: {target}"
        for line, target in imports_of(path)
        if target.split(".")[0] in forbidden
    ]
    assert not found, f"{path.relative_to(REPO_ROOT)} is core (pure logic) but imports {found}"


@pytest.mark.parametrize("path", python_files("tasks", "flows"), ids=module_name)
def test_only_wiring_picks_a_backend(path: Path) -> None:
    relative = path.relative_to(REPO_ROOT).as_posix()
    if relative == BACKEND_PICKER or relative.startswith("tasks/backends/"):
        return
    picked = [
        f"line {line}: {target}"
        for line, target in imports_of(path)
        if target.startswith(BACKEND_IMPLEMENTATIONS) and not target.startswith(BACKEND_SHARED)
    ]
    assert not picked, f"{relative} imports a backend directly ({picked}); go through wiring"


@pytest.mark.parametrize(
    "path",
    [p for p in python_files("tasks", "flows") if "tasks/backends/gcp" not in p.as_posix()],
    ids=module_name,
)
def test_only_the_gcp_backend_imports_google(path: Path) -> None:
    google = [target for _, target in imports_of(path) if target.split(".")[0] == "google"]
    assert not google, f"{path.relative_to(REPO_ROOT)} imports {google}"


@pytest.mark.parametrize("path", python_files("job_image"), ids=module_name)
def test_the_job_image_is_standalone(path: Path) -> None:
    """The job runs in its own container: it may not import the orchestrator's code."""
    forbidden = ("prefect", *PROJECT_PACKAGES)
    found = [target for _, target in imports_of(path) if target.split(".")[0] in forbidden]
    assert not found, f"{path.relative_to(REPO_ROOT)} imports {found}"


def test_the_checks_can_fail() -> None:
    """The rules above are not vacuous: an upward import is recognised as one."""
    assert layer_of("flows.settings") == 3 > layer_of("core.contracts") == 0
    assert layer_of("tasks.backends.gcp.job") == 1 < layer_of("tasks.train") == 2
    assert layer_of("prefect") is None
