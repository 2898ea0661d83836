"""Run each pipeline step as a Prefect task and keep how it ended, for the report and the CLI.

Prefect records every task run's state, but only in its API, asynchronously; the report at the
end of the run and the CLI summary need, synchronously, which steps were answered from the
cache (`Cached`) and which really ran (`Completed`), with their wall time.
"""

from __future__ import annotations

import time
from typing import Any, ParamSpec, TypeVar

from prefect import Task

from core.report import StepRecord

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
        return state.result()
