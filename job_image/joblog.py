"""How the job talks to whoever runs it: `PROGRESS {json}` lines and plain log lines on stdout.

A PROGRESS line is `PROGRESS {"phase": ..., "step": s, "total": t, "overall": f, ...extras}`:
`step`/`total` count within the phase, `overall` (0..1) is the whole job's share done, weighted
by phase, so one bar can show the job without ever going backwards or reading 100 % while the
model is still loading. Locally the runner reads these lines from the subprocess's stdout; on
Cloud Run they land in the execution's Cloud Logging stream, which the gcp runner polls. Both
parse them with core/job_progress.py (this package is standalone: the format is the contract).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

# Share of the whole job each phase fills, in the order the job runs them. Training dominates
# a real run; loading (imports, a hub download) and the two evaluations come next.
PHASE_WEIGHTS: dict[str, float] = {
    "load": 0.05,
    "eval_base": 0.10,
    "train": 0.65,
    "merge": 0.06,
    "save": 0.04,
    "eval": 0.10,
}


def overall_fraction(phase: str, step: int, total: int) -> float:
    """The whole job's share done (0..1) when `phase` is at `step` of `total`.

    The phases before `phase` count in full, `phase` by its own fraction (clamped to 0..1), so
    the value never decreases while phases come in PHASE_WEIGHTS order with non-decreasing
    steps — also when a resumed run skips phases or steps — and reaches 1.0 only at the end of
    the last phase.
    """
    if phase not in PHASE_WEIGHTS:
        raise ValueError(f"unknown progress phase {phase!r}; one of {list(PHASE_WEIGHTS)}")
    names = list(PHASE_WEIGHTS)
    before = sum(PHASE_WEIGHTS[name] for name in names[: names.index(phase)])
    within = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
    return round(before + PHASE_WEIGHTS[phase] * within, 4)


def progress(phase: str, step: int, total: int, **extra: float | None) -> None:
    """Emit one machine-readable progress line."""
    record: dict[str, Any] = {
        "phase": phase,
        "step": step,
        "total": total,
        "overall": overall_fraction(phase, step, total),
    }
    record.update({key: finite_or_none(value) for key, value in extra.items()})
    print("PROGRESS " + json.dumps(record), flush=True)


def log(message: str) -> None:
    """Free-form log line, flushed so it interleaves correctly with PROGRESS lines."""
    print(message, flush=True)


def finite_or_none(value: float | None) -> float | None:
    """NaN/inf are not JSON; record them as null rather than writing an unreadable manifest."""
    return value if value is None or math.isfinite(value) else None


def utc_now() -> str:
    """ISO-8601 UTC timestamp with a Z suffix."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
