"""The mark a model version carries once the evaluation gate refused it: `REJECTED.json`.

The weights stay (they are the evidence, and a rerun with the same inputs would train the same
model), but the folder says, next to its MANIFEST.json, that it was refused, why and under
which thresholds — so no later run, rollback or person serves or reuses it without being told.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.contracts import ArtifactStore

REJECTED_NAME = "REJECTED.json"


def mark_rejected(
    store: ArtifactStore,
    prefix: str,
    problems: Sequence[str],
    metrics: Mapping[str, float],
    thresholds: Mapping[str, Any],
) -> str:
    """Write `prefix/REJECTED.json`; returns its address."""
    record = {
        "rejected_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "problems": list(problems),
        "metrics": dict(metrics),
        "thresholds": dict(thresholds),
    }
    path = f"{prefix.strip('/')}/{REJECTED_NAME}"
    store.write_bytes(path, json.dumps(record, indent=2, sort_keys=True).encode())
    return store.uri_for(path)


def rejection_of(store: ArtifactStore, prefix: str) -> dict[str, Any] | None:
    """The rejection record of a model version, or None when it was never refused."""
    try:
        record = json.loads(store.read_bytes(f"{prefix.strip('/')}/{REJECTED_NAME}"))
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None
