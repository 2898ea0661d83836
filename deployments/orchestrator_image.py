"""The orchestrator image's build context: the pipeline code and its Dockerfile, nothing else.

The builder tags an image with the content hash of the folder it is given and builds nothing
when that tag exists, so the context is assembled from a fixed list of paths with the
caches and bytecode that `tree_files` skips left out: the same code always gives the same
folder, the same hash and no rebuild, whatever else lies in the checkout (`.env`, `.venv`,
models under `.pipeline/`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.hashing import tree_files

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = Path(__file__).with_name("orchestrator.Dockerfile")
# What the flow imports or reads at run time, and what `pip install .` needs (pyproject names
# README.md as the readme). job_image/ goes too: the flow builds the training image from it.
CONTEXT_PATHS = (
    "core",
    "tasks",
    "flows",
    "deployments",
    "job_image",
    "pyproject.toml",
    "prefect.yaml",
    "README.md",
)


def context_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files of the context under `root`, sorted (the hash covers names and contents)."""
    files: list[Path] = []
    for name in CONTEXT_PATHS:
        path = root / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run from a full checkout")
        files.extend(tree_files(path) if path.is_dir() else [path])
    return files


def assemble_context(target: Path, root: Path = REPO_ROOT) -> Path:
    """Copy the context into the empty folder `target`, the Dockerfile as `Dockerfile`."""
    for path in context_files(root):
        copied = target / path.relative_to(root)
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copied)  # keeps the executable bit, which the tarball records
    shutil.copy2(DOCKERFILE, target / "Dockerfile")
    return target


@contextmanager
def orchestrator_context(root: Path = REPO_ROOT) -> Iterator[Path]:
    """A temporary build context, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-context-") as scratch:
        yield assemble_context(Path(scratch), root)
