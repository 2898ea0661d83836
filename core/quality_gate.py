"""The evaluation gate: is a verified model good enough to be deployed?

Verification proves the folder is intact; this proves the model is worth serving. It reads the
metrics the training job measured on held-out rows (MANIFEST.json `metrics`: the tuned model's
`eval_loss`, `emoji_only_rate`, `emoji_f1`, … and the base model's `base_*` on the same rows)
and returns every problem, so an operator sees the whole picture at once. Pure: numbers in,
sentences out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# One-sided 95 %: a model exactly as good as its base fails the emoji comparisons ~5 % of the
# time by chance at most (each), instead of ~50 % with a bare `tuned >= base`.
CONFIDENCE_Z = 1.645


@dataclass(frozen=True)
class QualityThresholds:
    """What a model must reach; built from the pipeline's `quality` settings."""

    min_emoji_only_rate: float
    max_eval_loss: float | None
    require_improvement_over_base: bool
    max_loss_regression: float


def quality_problems(metrics: Mapping[str, float], thresholds: QualityThresholds) -> list[str]:
    """Human-readable reasons to refuse deployment; empty when the model passes."""
    needed = ["eval_loss", "emoji_only_rate"]
    if thresholds.require_improvement_over_base:
        needed += ["emoji_f1", "eval_examples"]
        needed += ["base_eval_loss", "base_emoji_only_rate", "base_emoji_f1"]
    missing = [name for name in needed if not _is_number(metrics.get(name))]
    if missing:
        return [
            f"metrics lack {', '.join(missing)}: the training job did not evaluate the model "
            "(and its base) on held-out rows, so its quality is unknown"
        ]
    problems = _absolute_problems(metrics, thresholds)
    if thresholds.require_improvement_over_base:
        problems += _regressions(metrics, thresholds.max_loss_regression)
    return problems


def _absolute_problems(metrics: Mapping[str, float], thresholds: QualityThresholds) -> list[str]:
    problems = []
    rate = metrics["emoji_only_rate"]
    if rate < thresholds.min_emoji_only_rate:
        problems.append(
            f"emoji-only answer rate {rate:.2f} is below the minimum "
            f"{thresholds.min_emoji_only_rate:.2f} (quality.min_emoji_only_rate)"
        )
    loss = metrics["eval_loss"]
    if thresholds.max_eval_loss is not None and loss > thresholds.max_eval_loss:
        problems.append(
            f"eval loss {loss:.4g} is above the maximum {thresholds.max_eval_loss:.4g} "
            "(quality.max_eval_loss)"
        )
    return problems


def noise_margin(tuned: float, base: float, rows: float) -> float:
    """How far below its base a mean score over `rows` answers may fall by chance alone.

    Scores are in [0, 1] (the emoji-only rate is a proportion, F1 a mean of per-answer F1s); a
    score in [0, 1] with mean m has variance at most m (1 - m) (Bhatia-Davis; equality for a
    proportion), so the difference of the two means has standard error at most
    sqrt((t (1 - t) + b (1 - b)) / n). The margin is CONFIDENCE_Z of those, and never less than
    one answer (1 / n): one answer more or less cannot flip the gate.
    """
    n = max(rows, 1.0)
    spread = math.sqrt((tuned * (1 - tuned) + base * (1 - base)) / n)
    return max(1 / n, CONFIDENCE_Z * spread)


def _regressions(metrics: Mapping[str, float], max_loss_regression: float) -> list[str]:
    """The tuned model must beat its base: lower loss, and emoji metrics not worse beyond noise.

    `max_loss_regression` lets the loss end slightly above the base's when the base is already
    near-perfect on these rows (like the tiny demo model); a real fine-tune lowers it by far more.
    The emoji metrics move in steps of one answer (0.02 at 50 rows), so "no worse" means "not
    worse by more than `noise_margin`".
    """
    problems = []
    loss, base_loss = metrics["eval_loss"], metrics["base_eval_loss"]
    allowed = base_loss * (1 + max_loss_regression)
    if loss > allowed:
        problems.append(
            f"eval loss {loss:.4g} does not beat the base model's {base_loss:.4g} "
            f"(allowed up to {allowed:.4g} by quality.max_loss_regression={max_loss_regression:g})"
        )
    rows = metrics["eval_examples"]
    for name, label in (("emoji_only_rate", "emoji-only answer rate"), ("emoji_f1", "emoji F1")):
        tuned, base = metrics[name], metrics[f"base_{name}"]
        margin = noise_margin(tuned, base, rows)
        if tuned < base - margin:
            problems.append(
                f"{label} {tuned:.2f} is worse than the base model's {base:.2f} by more than "
                f"the noise of {rows:g} held-out answers ({margin:.2f}; "
                "quality.require_improvement_over_base)"
            )
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
