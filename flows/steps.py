"""Run each pipeline step as a Prefect task and keep how it ended, for the report and the CLI.

Prefect records every task run's state, but only in its API, asynchronously; the report at the
end of the run and the CLI summary need, synchronously, which steps were answered from the
cache (`Cached`) and which really ran (`Completed`), with their wall time.
"""

from __future__ import annotations

import time
from typing import Any, ParamSpec, TypeVar

import httpx
from prefect import Task, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from core.report import StepRecord

FAILED_STEP_LABEL = "emoji-finetune.failed-step"  # read by the alert (deployments/alerts.py)
P = ParamSpec("P")
R = TypeVar("R")


class StepRecorder:
    """`record(task, *args)` runs the task, notes its final state, returns its result (or
    raises its error, failing the flow); `records` lists the steps in the order they ran."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []

    def __call__(self, step: Task[P, R], *args: Any, **kwargs: Any) -> R:
        started = time.perf_counter()
        state = step(*args, return_state=True, **kwargs)
        elapsed = time.perf_counter() - started
        self.records.append(StepRecord(step.name, state.name or state.type.value, elapsed))
        if state.is_failed() or state.is_crashed():
            label_failed_step(step.name)
        return state.result()


def label_failed_step(name: str) -> None:
    """Label the flow run with the step that failed, so an alert can name it (the run's
    state message only carries the error). Best effort: the step's own error must win."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(context.flow_run.id, {FAILED_STEP_LABEL: name})
    except httpx.HTTPError as error:  # Prefect's API errors are httpx's
        get_run_logger().warning("could not label the failed step %s: %s", name, error)
