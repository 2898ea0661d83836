"""How the job talks to whoever runs it: `PROGRESS {json}` lines and plain log lines on stdout.

The orchestrator (a local subprocess reader, or Cloud Run's log stream) parses the PROGRESS
lines; phases, in order: load, eval_base, train, merge, save, eval.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any


def progress(phase: str, step: int, total: int, **extra: float | None) -> None:
    """Emit one machine-readable progress line."""
    record: dict[str, Any] = {"phase": phase, "step": step, "total": total}
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
