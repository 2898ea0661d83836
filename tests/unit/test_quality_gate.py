"""The evaluation gate: which held-out metrics stop a model from being served, and why."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from core.quality_gate import QualityThresholds, noise_margin, quality_problems
from flows.settings import PipelineSettings, QualitySettings

GATE = QualityThresholds(
    min_emoji_only_rate=0.5,
    max_eval_loss=None,
    require_improvement_over_base=True,
    max_loss_regression=0.1,
)
# A real fine-tune: the base rambles in words, the tuned model answers in emoji.
GOOD = {
    "eval_loss": 0.6,
    "emoji_only_rate": 0.96,
    "exact_match": 0.3,
    "emoji_f1": 0.55,
    "eval_examples": 50.0,
    "train_loss": 0.5,
    "base_eval_loss": 3.2,
    "base_emoji_only_rate": 0.1,
    "base_exact_match": 0.0,
    "base_emoji_f1": 0.2,
}


def gate(**changes: object) -> QualityThresholds:
    return replace(GATE, **changes)


def test_a_model_that_beats_its_base_passes() -> None:
    assert quality_problems(GOOD, GATE) == []


def test_too_few_emoji_only_answers_fail() -> None:
    problems = quality_problems({**GOOD, "emoji_only_rate": 0.4}, gate(min_emoji_only_rate=0.9))
    assert len(problems) == 1
    assert "0.40 is below the minimum 0.90" in problems[0] and "min_emoji_only_rate" in problems[0]


def test_absolute_loss_cap_applies_only_when_set() -> None:
    assert quality_problems({**GOOD, "eval_loss": 2.5}, GATE) == []
    (problem,) = quality_problems({**GOOD, "eval_loss": 2.5}, gate(max_eval_loss=1.0))
    assert "above the maximum 1" in problem and "max_eval_loss" in problem


def test_a_model_worse_than_its_base_fails_with_every_reason() -> None:
    worse = {**GOOD, "eval_loss": 4.0, "emoji_only_rate": 0.3, "base_emoji_only_rate": 0.7}
    problems = quality_problems({**worse, "emoji_f1": 0.02}, gate(min_emoji_only_rate=0.2))
    assert len(problems) == 3, problems
    assert "does not beat the base model's 3.2" in problems[0]
    assert "emoji-only answer rate 0.30 is worse than the base model's 0.70" in problems[1]
    assert "emoji F1 0.02 is worse than the base model's 0.20 by more than" in problems[2]
    assert "noise of 50 held-out answers (0.10;" in problems[2]


@pytest.mark.parametrize("base", [1.0, 0.98, 0.7, 0.5, 0.1, 0.02])
def test_one_answer_less_than_the_base_never_flips_the_gate(base: float) -> None:
    rows, no_floor = 50, gate(min_emoji_only_rate=0.0)
    one_less = {"emoji_only_rate": base - 1 / rows, "base_emoji_only_rate": base}
    assert quality_problems({**GOOD, **one_less, "eval_examples": rows}, no_floor) == []
    f1_lower = {"emoji_f1": base - 1 / rows, "base_emoji_f1": base}
    assert quality_problems({**GOOD, **f1_lower, "eval_examples": rows}, GATE) == []


def test_the_noise_margin_shrinks_with_more_rows_and_at_the_extremes() -> None:
    assert noise_margin(0.5, 0.5, 50) == pytest.approx(1.645 * math.sqrt(0.5 / 50))
    assert noise_margin(0.5, 0.5, 5000) < noise_margin(0.5, 0.5, 50) / 9
    assert noise_margin(1.0, 1.0, 50) == pytest.approx(1 / 50)  # never below one answer
    drop = {**GOOD, "emoji_only_rate": 0.9, "base_emoji_only_rate": 1.0}
    assert quality_problems(drop, GATE) != []  # 5 of 50 answers lost from a perfect base
    assert quality_problems({**drop, "eval_examples": 5.0}, GATE) == []  # but 0.5 of 5 rows


def test_loss_slack_covers_an_already_perfect_base_only() -> None:
    perfect_base = {**GOOD, "base_eval_loss": 0.0050, "base_emoji_only_rate": 1.0}
    tuned = {**perfect_base, "eval_loss": 0.0051, "emoji_only_rate": 1.0, "emoji_f1": 1.0}
    perfect = {**tuned, "base_emoji_f1": 1.0}
    assert quality_problems(perfect, GATE) == []  # 2% above a near-zero base loss: noise
    assert quality_problems(perfect, gate(max_loss_regression=0.0)) != []
    assert quality_problems({**perfect, "eval_loss": 0.006}, GATE) != []  # 20% worse


def test_comparison_with_the_base_can_be_switched_off() -> None:
    no_better = {**GOOD, "eval_loss": 4.0}
    assert quality_problems(no_better, GATE) != []
    assert quality_problems(no_better, gate(require_improvement_over_base=False)) == []
    tuned_only = {k: v for k, v in GOOD.items() if not k.startswith("base_")}
    assert quality_problems(tuned_only, gate(require_improvement_over_base=False)) == []


@pytest.mark.parametrize(
    "missing", ["eval_loss", "base_eval_loss", "base_emoji_f1", "eval_examples"]
)
def test_missing_or_non_finite_metrics_fail_closed(missing: str) -> None:
    without = {k: v for k, v in GOOD.items() if k != missing}
    (problem,) = quality_problems(without, GATE)
    assert f"metrics lack {missing}" in problem
    (problem,) = quality_problems({**GOOD, missing: math.nan}, GATE)
    assert missing in problem


def test_settings_defaults_build_the_gate() -> None:
    quality = PipelineSettings(_env_file=None).quality  # type: ignore[call-arg]
    assert quality == QualitySettings()
    thresholds = QualityThresholds(**quality.model_dump())
    assert thresholds == replace(GATE, max_loss_regression=0.0)  # strict unless relaxed


def test_the_report_shows_base_beside_tuned_and_the_training_settings() -> None:
    from core.report import evaluation_table, lineage_table

    table = evaluation_table({"eval_loss": 0.5, "base_eval_loss": 2.0, "train_loss": 0.4})
    assert "| eval_loss | 2 | 0.5 |" in table
    assert "| train_loss | — | 0.4 |" in table
    assert not any(row.startswith("| base_") for row in table)
    rows = lineage_table({"dataset": "d.jsonl", "training": {"lora_r": 4, "target_modules": ["q"]}})
    assert "| training.lora_r | `4` |" in rows
    assert "| training.target_modules | `q` |" in rows
    assert "| dataset | `d.jsonl` |" in rows
