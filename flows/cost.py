"""What this run cost on the cloud: the training execution and the candidate's serving time.

Counted: the training job's execution (its start → completion, from Cloud Run) when this run
started or waited on it — a cached or reused model cost nothing now; and the new service
instance from the deploy's first request to the smoke test's answer (wall time of those two
steps). Not counted: the image build (Cloud Build, cents), storage, and the idle time Cloud Run
keeps a scaled-to-zero service's instance up after its last request (up to about 15 minutes,
billed under instance-based billing; Cloud Run decides it, the run cannot see it).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.contracts import JobOutcome
from core.cost import CostEstimate, Usage
from core.report import LOCAL_COST, StepRecord, serving_seconds
from flows.settings import PipelineSettings

TRAINED = "Completed"  # the train step's state when it ran in this run (not Cached)


def run_cost(
    settings: PipelineSettings, job: JobOutcome, steps: Sequence[StepRecord]
) -> tuple[str, ...]:
    """The cost lines of the report and the CLI summary."""
    if settings.backend != "gcp":
        return (LOCAL_COST,)
    gcp = settings.gcp
    usages: dict[str, Usage] = {}
    trained_now = any(s.name == "train" and s.state == TRAINED for s in steps)
    if trained_now and job.usage is not None:
        usages["training job"] = job.usage
    serving = serving_seconds(steps)
    if serving > 0:
        usages["serving (deploy + smoke test)"] = Usage(serving, 1, gcp.cpu, gcp.memory_gib)
    return tuple(CostEstimate(usages, gcp.prices()).lines())
