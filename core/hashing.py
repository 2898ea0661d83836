"""Content hashes: the identity of data files, model folders and the training code.

A file's hash covers its bytes only. A tree's hash covers its files' bytes *and* their paths
relative to the tree's root, so renaming or moving a file inside the tree changes it; where
the tree lies (its absolute path) and timestamps never enter. A checkout moved elsewhere or a
re-downloaded file therefore hashes the same, and an edited or renamed one does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20
IGNORED_NAMES = frozenset({"__pycache__", ".DS_Store", ".pytest_cache", ".ruff_cache"})


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, streamed so model weights never sit in memory whole."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: Path) -> list[Path]:
    """Files under `root` that define its content, sorted, skipping caches and bytecode."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and not IGNORED_NAMES.intersection(path.relative_to(root).parts)
        and path.suffix != ".pyc"
    )


def sha256_tree(root: Path, files: Iterable[Path] | None = None) -> str:
    """One hash over relative names and contents: renames and edits both change it."""
    digest = hashlib.sha256()
    for path in files if files is not None else tree_files(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()
