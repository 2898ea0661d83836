"""Unit tests of the job's progress weighting: one bar for the whole job, never backwards."""

from __future__ import annotations

import json

import pytest
from job_modules import job_module

joblog = job_module("joblog")

# A whole run as finetune.py reports it: load, base eval, train, merge, save, eval.
RUN = [
    ("load", 0, 2), ("load", 1, 2), ("load", 2, 2),
    ("eval_base", 1, 2), ("eval_base", 2, 2),
    *[("train", step, 20) for step in (5, 10, 15, 20)],
    ("merge", 0, 1), ("merge", 1, 1), ("save", 0, 1), ("save", 1, 1),
    ("eval", 1, 2), ("eval", 2, 2),
]  # fmt: skip


def test_weights_cover_the_job_once() -> None:
    assert sum(joblog.PHASE_WEIGHTS.values()) == pytest.approx(1.0)
    assert max(joblog.PHASE_WEIGHTS, key=joblog.PHASE_WEIGHTS.get) == "train"


def test_a_whole_run_rises_monotonically_to_one() -> None:
    fractions = [joblog.overall_fraction(*event) for event in RUN]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions.count(1.0) == 1  # 100 % only when the last phase is done


def test_loading_is_never_most_of_the_bar() -> None:
    assert joblog.overall_fraction("load", 2, 2) == joblog.PHASE_WEIGHTS["load"] < 0.1
    assert joblog.overall_fraction("eval_base", 0, 2) == joblog.overall_fraction("load", 2, 2)


def test_a_resumed_run_that_skips_phases_still_moves_forward() -> None:
    resumed = [("load", 2, 2), ("train", 12, 20), ("train", 20, 20), ("merge", 0, 1)]
    fractions = [joblog.overall_fraction(*event) for event in resumed]
    assert fractions == sorted(fractions)
    assert fractions[1] > joblog.overall_fraction("train", 0, 20)  # resumed work counts as done


def test_out_of_range_steps_are_clamped_and_unknown_phases_refused() -> None:
    assert joblog.overall_fraction("train", 30, 20) == joblog.overall_fraction("merge", 0, 1)
    assert joblog.overall_fraction("train", 3, 0) == joblog.overall_fraction("train", 0, 20)
    with pytest.raises(ValueError, match="unknown progress phase 'warmup'"):
        joblog.overall_fraction("warmup", 1, 2)


def test_progress_line_keeps_phase_counts_and_adds_overall(
    capsys: pytest.CaptureFixture[str],
) -> None:
    joblog.progress("train", 5, 20, loss=float("nan"))
    line = capsys.readouterr().out.strip()
    assert line.startswith("PROGRESS ")
    record = json.loads(line.removeprefix("PROGRESS "))
    assert record == {"phase": "train", "step": 5, "total": 20, "overall": 0.3125, "loss": None}
