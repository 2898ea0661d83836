"""What a finished training execution used, as Cloud Run bills it: seconds × its resources.

The execution's `startTime` → `completionTime` spans every task attempt (a retried task resumes
in the same execution), so it bounds the billed instance time from above; scheduling before the
first task starts is not in it (Cloud Run sets `startTime` when the execution starts running).
Each task runs 1 GPU with `gcp.cpu` vCPUs and `gcp.memory_gib` GiB.
"""

from __future__ import annotations

from google.cloud import run_v2

from core.cost import Usage
from tasks.backends.gcp.config import GcpSettings


def execution_usage(execution: run_v2.Execution, settings: GcpSettings) -> Usage | None:
    """The execution's resource-seconds; None when Cloud Run reports no start or end."""
    started, completed = execution.start_time, execution.completion_time
    if not started or not completed:
        return None
    seconds = max(0.0, (completed - started).total_seconds())
    return Usage(seconds, gpus=1, vcpus=settings.cpu, memory_gib=settings.memory_gib)
