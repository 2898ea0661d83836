"""Deciding whether a dataset changed: pure rules, so they are testable without Prefect.

The watcher stores the last revision it saw durably and emits one event per change. The
event's resource id is derived from the dataset's name, so a trigger can match one dataset
(or all of them with a wildcard) and the pipeline run knows which one moved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

EVENT_NAME = "emoji-finetune.dataset.changed"
RESOURCE_PREFIX = "emoji-finetune.dataset"


@dataclass(frozen=True)
class WatchDecision:
    """What one watcher run concluded."""

    dataset: str
    previous: str | None
    current: str
    emit: bool
    record: bool

    @property
    def reason(self) -> str:
        if self.previous is None:
            return "first sight" + (": emitting" if self.emit else ": recorded without an event")
        if self.previous == self.current:
            return "unchanged"
        return f"changed {self.previous[:19]} → {self.current[:19]}"


def dataset_slug(dataset: str) -> str:
    """A short, stable, name-safe id for a dataset id or path."""
    return hashlib.sha256(dataset.encode()).hexdigest()[:12]


def resource_id(dataset: str) -> str:
    return f"{RESOURCE_PREFIX}.{dataset_slug(dataset)}"


def state_variable_name(dataset: str) -> str:
    """Prefect variable names allow lowercase letters, digits, `_` and `-` only."""
    return f"dataset-revision-{dataset_slug(dataset)}"


def decide(
    dataset: str, previous: str | None, current: str, emit_on_first_sight: bool
) -> WatchDecision:
    """Emit exactly when the revision differs from the last one recorded (or, if asked, on
    first sight); record whenever the stored revision is not the current one."""
    changed = previous is not None and previous != current
    first = previous is None
    return WatchDecision(
        dataset=dataset,
        previous=previous,
        current=current,
        emit=changed or (first and emit_on_first_sight),
        record=previous != current,
    )
