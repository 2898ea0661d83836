"""Reading the training job's `PROGRESS {json}` lines (written by job_image/joblog.py).

Both backends read the same lines — locally from the subprocess's stdout, on Cloud Run from
the execution's Cloud Logging entries — so both drive the progress artifact the same way.
job_image/ is standalone and cannot share this code; the line format is the contract.
"""

from __future__ import annotations

import json

from core.contracts import Progress

PROGRESS_MARKER = "PROGRESS "


def parse_progress(line: str) -> Progress | None:
    """Turn a job's `PROGRESS {json}` line into a Progress of the whole job.

    `{"phase": "train", "step": 3, "total": 50, "overall": 0.41, "loss": 0.5}` becomes 41 of
    100 with the message "train 3/50 loss=0.5": `overall` is the job's phase-weighted share
    done (job_image/joblog.py), so one bar covers the whole job. A line without it (from an
    older job image) counts the phase's own step of total.
    """
    if not line.startswith(PROGRESS_MARKER):
        return None
    try:
        payload = dict(json.loads(line[len(PROGRESS_MARKER) :]))
        step, total = float(payload.pop("step")), float(payload.pop("total"))
    except (ValueError, KeyError, TypeError):
        return None
    phase, overall = payload.pop("phase", ""), payload.pop("overall", None)
    details = [f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
               for key, value in payload.items()]  # fmt: skip
    message = " ".join([f"{phase} {step:g}/{total:g}".strip(), *details])
    if isinstance(overall, int | float) and not isinstance(overall, bool):
        return Progress(done=round(100.0 * overall, 2), total=100.0, message=message)
    return Progress(done=step, total=total, message=message)
