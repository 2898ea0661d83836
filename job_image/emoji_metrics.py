"""Answer-quality metrics for the emoji translation task.

Kept apart from `finetune.py` (and free of torch) so the metric definitions can be unit-tested
and read on their own: the evaluation gate downstream trusts these numbers, so what counts as
"emoji only" must be explicit. The training script imports this module by a flat import, which
works because Python puts the script's own directory on `sys.path`.
"""

from __future__ import annotations

from collections.abc import Sequence

import emoji


def is_emoji_only(answer: str) -> bool:
    """True when `answer` is non-empty and holds nothing but emoji and whitespace.

    `emoji.replace_emoji` removes whole sequences (ZWJ families, flags, skin tones, keycaps) and
    stray variation selectors, so whatever survives is text the model should not have produced.
    """
    if not answer.strip():
        return False
    return emoji.replace_emoji(answer, replace="").strip() == ""


def is_exact_match(answer: str, reference: str) -> bool:
    """True when the answer equals the reference once surrounding whitespace is ignored."""
    return answer.strip() == reference.strip()


def emoji_only_rate(answers: Sequence[str]) -> float:
    """Fraction of answers that are emoji-only; 0.0 for no answers (nothing was shown to work)."""
    if not answers:
        return 0.0
    return sum(is_emoji_only(a) for a in answers) / len(answers)


def exact_match_rate(answers: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of answers equal to their reference; 0.0 for no answers."""
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers but {len(references)} references")
    if not answers:
        return 0.0
    return sum(is_exact_match(a, r) for a, r in zip(answers, references, strict=True)) / len(
        answers
    )
