"""The published model folder contract: what must be in it, MANIFEST.json, and publishing.

Why a module of its own: this is the part of the training job that the rest of the pipeline
(verifier, server) depends on, so it is kept small, stdlib-only (plus safetensors for the LoRA
check) and readable in one sitting. The rules it enforces:

- a folder is complete iff it holds `MANIFEST.json`; the manifest is written last;
- a finished model is built in a sibling `<name>.partial-<random>` folder and then renamed into
  place, so readers never see a half-written `models/<lineage-key>/`;
- a published folder is immutable: a different lineage key is never written over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

MANIFEST_NAME = "MANIFEST.json"
FORMAT_VERSION = 1
# What this job writes, so stricter than what the pipeline's verifier accepts from any folder
# (core/verification.py also takes sharded weights, and no generation config): the merge saves
# one model.safetensors (publish.py, max_shard_size="1000GB") and a generation config whose eos
# includes <end_of_turn>, without which servers would not stop at the end of an answer.
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
PARTIAL_MARK = ".partial-"


class ManifestError(ValueError):
    """A folder carries a MANIFEST.json that cannot be read: a person has to look at it."""


def read_manifest_key(folder: Path) -> str | None:
    """Lineage key of a published folder, or None when it has no manifest (incomplete)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["lineage_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is unreadable ({exc}); inspect it, then remove it") from exc


def new_partial_dir(output_dir: Path) -> Path:
    """A fresh sibling build folder, `<name>.partial-<random>` (not created yet)."""
    return output_dir.with_name(f"{output_dir.name}{PARTIAL_MARK}{secrets.token_hex(4)}")


def clear_leftovers(output_dir: Path, log: Callable[[str], None]) -> None:
    """Remove an incomplete output folder and partial siblings left by crashed attempts.

    Without this, every killed attempt would leave a model-sized folder behind in the store.
    What makes it safe: before starting a job the orchestrator checks for one already training
    this lineage key — locally an atomic lock file per key (taken over only from a dead pid),
    on gcp a look for a running execution started with the key, which two racing flow runs
    could both pass. Should two jobs ever overlap, one can remove the other's work in
    progress: that job then fails (exit 1), or, on a store without directory rename where
    `publish` copies, it can seal a folder that lacks files — which the pipeline's
    verification (size and sha256 of every manifest entry) refuses to serve.
    """
    leftovers = sorted(output_dir.parent.glob(f"{output_dir.name}{PARTIAL_MARK}*"))
    if output_dir.is_dir() and read_manifest_key(output_dir) is None:
        leftovers.append(output_dir)
    for path in leftovers:
        log(f"removing {path}, left incomplete by an earlier attempt")
        shutil.rmtree(path)


def check_model_files(folder: Path) -> None:
    """Refuse to publish a folder a server could not load or that still carries LoRA parts."""
    from safetensors import safe_open

    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"merged model folder lacks {missing}")
    if any(folder.glob("adapter_*")):
        raise RuntimeError("merged model folder still contains adapter files")
    with safe_open(folder / "model.safetensors", framework="pt") as weights:
        lora = [k for k in weights.keys() if "lora_" in k]  # noqa: SIM118 (safe_open: no __iter__)
    if lora:
        raise RuntimeError(f"merged weights still contain LoRA tensors, e.g. {lora[0]}")


def file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """size + sha256 of every file except the manifest, keyed by POSIX relative path."""
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == MANIFEST_NAME:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        entries[name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return entries


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write MANIFEST.json durably; call it last, its presence marks the folder complete."""
    text = json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with (folder / MANIFEST_NAME).open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def publish(partial: Path, output_dir: Path, lineage_key: str, log: Callable[[str], None]) -> None:
    """Move the finished partial folder into place, keeping "manifest last" on every path."""
    if output_dir.exists():
        existing = read_manifest_key(output_dir)
        if existing == lineage_key:  # the same version was published meanwhile: ours is a dupe
            log(f"{output_dir} was published meanwhile by another run; discarding this copy")
            shutil.rmtree(partial)
            return
        if existing is not None:
            raise RuntimeError(f"{output_dir} appeared meanwhile with lineage key {existing!r}")
        shutil.rmtree(output_dir)
    try:
        os.rename(partial, output_dir)
    except OSError as exc:  # e.g. a bucket mount without directory rename: copy, manifest last
        log(f"rename failed ({exc}); copying files instead, manifest last")
        files = sorted(p.relative_to(partial) for p in partial.rglob("*") if p.is_file())
        for name in sorted(files, key=lambda rel: rel.as_posix() == MANIFEST_NAME):
            (output_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(partial / name, output_dir / name)
        shutil.rmtree(partial)
