"""Resumable training: where adapter checkpoints live and which of them can be trusted.

Why: a Cloud Run task can be preempted or hit its deadline; the next execution of the same
lineage key should continue from the last saved optimizer step, not start over. The rules:

- checkpoints of `models/<key>` live in the sibling `models/<key>.checkpoints/`, in the same
  store (a bucket volume on Cloud Run), so they survive the container;
- the trainer writes `checkpoint-<step>/`; a `COMPLETE` marker is written into it last, after
  every file, so a checkpoint cut short by a crash is never resumed from (it is deleted);
- the folder is tagged with the lineage key it belongs to, so a checkpoint from other inputs
  is never mixed into this model version;
- after the model is published the folder is deleted: `models/` holds published versions only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUFFIX = ".checkpoints"
MARKER = "COMPLETE"
OWNER = "LINEAGE_KEY"
BASE_METRICS = "base_metrics.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def folder_for(output_dir: Path) -> Path:
    """`models/<key>` -> `models/<key>.checkpoints`."""
    return output_dir.with_name(output_dir.name + SUFFIX)


def prepare(folder: Path, lineage_key: str, log: Callable[[str], None]) -> None:
    """Create the folder for `lineage_key`, discarding one that belongs to another key."""
    owner = folder / OWNER
    if folder.is_dir() and (not owner.is_file() or owner.read_text().strip() != lineage_key):
        log(f"removing {folder}: its checkpoints are not for lineage key {lineage_key}")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not owner.is_file():
        _write_durably(owner, lineage_key + "\n")


def mark_complete(checkpoint: Path) -> None:
    """Seal a checkpoint folder once every file of it has been written."""
    _write_durably(checkpoint / MARKER, "ok\n")


def last_complete(folder: Path, log: Callable[[str], None]) -> Path | None:
    """The sealed checkpoint with the highest step; unsealed ones are deleted on the way."""
    sealed: list[tuple[int, Path]] = []
    for path in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        match = _CHECKPOINT.match(path.name)
        if match and (path / MARKER).is_file():
            sealed.append((int(match.group(1)), path))
        elif path.is_dir():
            log(f"removing {path}: an interrupted save, not a complete checkpoint")
            shutil.rmtree(path)
    return max(sealed)[1] if sealed else None


def load_base_metrics(folder: Path) -> dict[str, Any] | None:
    """The base model's metrics saved by an earlier attempt, so a resume does not redo them."""
    path = folder / BASE_METRICS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def save_base_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    """Keep the base model's metrics next to the checkpoints of the same lineage key."""
    _write_durably(folder / BASE_METRICS, json.dumps(metrics, allow_nan=False) + "\n")


def remove(folder: Path, log: Callable[[str], None]) -> None:
    """Delete the checkpoints once the model is published (or already was)."""
    if folder.exists():
        log(f"removing {folder}: the model is published")
        shutil.rmtree(folder, ignore_errors=True)


def _write_durably(path: Path, text: str) -> None:
    """Write via a temporary name, fsync, then rename: the file is whole or absent."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
