"""Unit tests of the answer metrics the evaluation gate relies on (no torch needed)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _import_emoji_metrics() -> ModuleType:
    """Import job_image/emoji_metrics.py without leaving __pycache__ in job_image/.

    The job image is tagged by a hash of that folder's content, so tests must not add to it.
    """
    folder = str(Path(__file__).resolve().parents[2] / "job_image")
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("emoji_metrics")
    finally:
        sys.path.remove(folder)
        sys.dont_write_bytecode = saved


emoji_metrics = _import_emoji_metrics()


@pytest.mark.parametrize(
    "answer",
    ["🍕", "☀️🍕", "👨‍👩‍👧", "👍🏽 🎉", "🇫🇷🗼", "1️⃣", " 🎄🇫🇷\n"],
)
def test_emoji_sequences_and_whitespace_count_as_emoji_only(answer: str) -> None:
    assert emoji_metrics.is_emoji_only(answer)


@pytest.mark.parametrize("answer", ["", "   ", "pizza 🍕", "🍕.", "Translate to emoji: 🍕"])
def test_empty_or_text_answers_are_not_emoji_only(answer: str) -> None:
    assert not emoji_metrics.is_emoji_only(answer)


def test_rates() -> None:
    answers = ["🍕", "pizza", " 🎉 "]
    assert emoji_metrics.emoji_only_rate(answers) == pytest.approx(2 / 3)
    assert emoji_metrics.exact_match_rate(answers, ["🍕", "🍕", "🎉"]) == pytest.approx(2 / 3)
    assert emoji_metrics.emoji_only_rate([]) == 0.0
    with pytest.raises(ValueError):
        emoji_metrics.exact_match_rate(["🍕"], [])
