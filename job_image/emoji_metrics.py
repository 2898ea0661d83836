"""Answer-quality metrics for the emoji translation task.

Kept apart from `finetune.py` (and free of torch) so the metric definitions can be unit-tested
and read on their own: the evaluation gate downstream trusts these numbers, so what counts as
"emoji only" must be explicit. The training script imports this module by a flat import, which
works because Python puts the script's own directory on `sys.path`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import emoji

# Variation selectors choose text vs emoji presentation ("❤" vs "❤️"); the same emoji either way.
VARIATION_SELECTORS = str.maketrans("", "", "\ufe0e\ufe0f")


def is_emoji_only(answer: str) -> bool:
    """True when `answer` is non-empty and holds nothing but emoji and whitespace.

    `emoji.replace_emoji` removes whole sequences (ZWJ families, flags, skin tones, keycaps) and
    stray variation selectors, so whatever survives is text the model should not have produced.
    """
    if not answer.strip():
        return False
    return emoji.replace_emoji(answer, replace="").strip() == ""


def is_exact_match(answer: str, reference: str) -> bool:
    """True when the answer equals the reference, normalised like `emoji_f1` normalises.

    Variation selectors ("❤" vs "❤️") and whitespace ("🍕 🍺" vs "🍕🍺") change how an answer
    renders, not what it says; counting them would make exact match disagree with F1 = 1.0.
    """
    return _normalised(answer) == _normalised(reference)


def _normalised(text: str) -> str:
    return "".join(text.translate(VARIATION_SELECTORS).split())


def emoji_only_rate(answers: Sequence[str]) -> float:
    """Fraction of answers that are emoji-only; 0.0 for no answers (nothing was shown to work)."""
    if not answers:
        return 0.0
    return sum(is_emoji_only(a) for a in answers) / len(answers)


def exact_match_rate(answers: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of answers equal to their reference; 0.0 for no answers."""
    return _mean_over_pairs(is_exact_match, answers, references)


def emoji_units(text: str) -> list[str]:
    """The emoji in `text`, one entry per grapheme, in order; non-emoji text is ignored.

    `emoji.emoji_list` matches whole sequences — ZWJ families (👨‍👩‍👧), flags (🇫🇷), subdivision
    flags (🏴󠁧󠁢󠁳󠁣󠁴󠁿), skin tones (👍🏽), keycaps (1️⃣) — so none is split into its code points.
    Variation selectors are dropped so "❤" and "❤️" count as the same emoji.
    """
    return [match["emoji"].translate(VARIATION_SELECTORS) for match in emoji.emoji_list(text)]


def emoji_f1(answer: str, reference: str) -> float:
    """F1 of the answer's emoji against the reference's, as multisets (order ignored).

    Partial credit for a near miss (🍕🍺 for 🍕🍷 scores 0.5) where exact match scores 0; two
    answers without any emoji agree perfectly (1.0), one without emoji against some scores 0.
    """
    predicted, expected = Counter(emoji_units(answer)), Counter(emoji_units(reference))
    if not predicted and not expected:
        return 1.0
    overlap = sum((predicted & expected).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(predicted.values())
    recall = overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def mean_emoji_f1(answers: Sequence[str], references: Sequence[str]) -> float:
    """Mean per-answer emoji F1; 0.0 for no answers."""
    return _mean_over_pairs(emoji_f1, answers, references)


def _mean_over_pairs(
    score: Callable[[str, str], float], answers: Sequence[str], references: Sequence[str]
) -> float:
    """Mean of `score(answer, reference)`; 0.0 for no answers (nothing was shown to work)."""
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers but {len(references)} references")
    if not answers:
        return 0.0
    return sum(score(a, r) for a, r in zip(answers, references, strict=True)) / len(answers)
