"""Watch the training dataset and emit one Prefect event per change.

Scheduled by `prefect.yaml`; the pipeline deployment has a trigger on the event that passes
the new revision into the run. The last revision seen is a Prefect variable, so it survives
restarts and is shared by every worker.

    python -m flows.watch_dataset [DATASET] [--emit-on-first-sight]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prefect import flow, get_run_logger, task
from prefect.events import emit_event
from prefect.variables import Variable

from core.dataset_watch import EVENT_NAME, WatchDecision, decide, resource_id, state_variable_name
from core.revisions import resolve_dataset_revision
from flows.settings import load_settings
from tasks.policy import UNCACHED_TASK_OPTIONS


@task(name="resolve-dataset-revision", **UNCACHED_TASK_OPTIONS)
def current_revision(dataset: str) -> str:
    """Hub commit sha, or `sha256:<content>` for a local file — never cached: it is the news."""
    return resolve_dataset_revision(dataset, revision=None)


@flow(name="watch-dataset", log_prints=True)
def watch_dataset(dataset: str | None = None, emit_on_first_sight: bool = False) -> WatchDecision:
    """Compare the dataset's current revision with the last one seen; emit an event on change.

    Args:
        dataset: Hugging Face dataset id or local file; unset = the pipeline's configured one.
        emit_on_first_sight: Also emit when this dataset has never been seen before.
    """
    logger = get_run_logger()
    dataset = dataset or load_settings().data.dataset
    variable = state_variable_name(dataset)
    previous = Variable.get(variable, default=None)
    decision = decide(dataset, previous, current_revision(dataset), emit_on_first_sight)
    if decision.emit:
        emit_event(
            event=EVENT_NAME,
            resource={
                "prefect.resource.id": resource_id(dataset),
                "prefect.resource.name": dataset,
            },
            payload={
                "dataset": dataset,
                "old_revision": decision.previous,
                "new_revision": decision.current,
            },
        )
    if decision.record:  # after the event: a crash in between re-emits rather than loses it
        Variable.set(variable, decision.current, overwrite=True)
    logger.info("dataset %s: %s", dataset, decision.reason)
    return decision


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.watch_dataset", description=__doc__)
    parser.add_argument("dataset", nargs="?", help="dataset id or path (default: settings)")
    parser.add_argument("--emit-on-first-sight", action="store_true")
    args = parser.parse_args(argv)
    decision = watch_dataset(args.dataset, args.emit_on_first_sight)
    print(f"{decision.dataset}: {decision.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
