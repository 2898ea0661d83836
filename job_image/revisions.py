"""The exact revision of the base model and the dataset that a run trained on.

Recorded in the manifest so a model folder says what it was made from even when it was run
by hand with a branch name or a local path: a hub input is recorded as the commit sha it
resolved to, a local file or folder as `sha256:<content hash>`. The hashes use the same
recipe as the pipeline's `core.hashing` (the job cannot import it), so the manifest's
revisions equal the lineage's for local inputs.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_CHUNK = 1 << 20
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
IGNORED_NAMES = frozenset({"__pycache__", ".DS_Store", ".pytest_cache", ".ruff_cache"})


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, streamed so model weights never sit in memory whole."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(root: Path) -> str:
    """One hash over relative names and contents of the files under `root`, sorted."""
    files = sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and not IGNORED_NAMES.intersection(path.relative_to(root).parts)
        and path.suffix != ".pyc"
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def local_revision(path: Path) -> str:
    """`sha256:<hash>` of a local file or folder."""
    return "sha256:" + (sha256_tree(path) if path.is_dir() else sha256_file(path))


def is_commit(revision: str | None) -> bool:
    """True for a full 40-hex commit sha (already exact; branches and tags move)."""
    return bool(revision and _COMMIT.match(revision))


def hub_dataset_commit(dataset: str, revision: str | None) -> str:
    """The commit a hub dataset revision points at (asks the hub unless already a sha)."""
    if is_commit(revision):
        return str(revision)
    from huggingface_hub import HfApi

    sha = HfApi().dataset_info(dataset, revision=revision).sha
    if not sha:
        raise RuntimeError(f"the hub returned no commit for dataset {dataset!r}@{revision}")
    return sha
