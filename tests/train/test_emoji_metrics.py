"""Unit tests of the answer metrics the evaluation gate relies on (no torch needed)."""

from __future__ import annotations

import pytest
from job_modules import job_module

emoji_metrics = job_module("emoji_metrics")


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


def test_exact_match_ignores_variation_selectors_and_spacing_like_f1() -> None:
    for answer, reference in (("❤", "❤️"), ("🍕 🍺", "🍕🍺"), ("☀️🏖", "☀🏖️")):
        assert emoji_metrics.is_exact_match(answer, reference)
        assert emoji_metrics.emoji_f1(answer, reference) == 1.0
    assert not emoji_metrics.is_exact_match("🍕🍺", "🍺🍕")  # order still matters here
    assert not emoji_metrics.is_exact_match("❤", "💙")


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("👨‍👩‍👧", ["👨‍👩‍👧"]),  # ZWJ family: one grapheme, not three people
        ("🧑🏿‍🚀👍🏽", ["🧑🏿‍🚀", "👍🏽"]),  # skin tones stay attached, also inside ZWJ
        ("🇫🇷🇯🇵", ["🇫🇷", "🇯🇵"]),  # regional-indicator pairs are one flag each
        ("🏴󠁧󠁢󠁳󠁣󠁴󠁿", ["🏴󠁧󠁢󠁳󠁣󠁴󠁿"]),  # subdivision flag (tag sequence)
        ("☀️ and ❤", ["☀", "❤"]),  # VS16 dropped, text ignored
        ("1️⃣", ["1⃣"]),  # keycap
        ("", []),
        ("no emoji here", []),
    ],
)
def test_emoji_units_are_whole_graphemes(text: str, units: list[str]) -> None:
    assert emoji_metrics.emoji_units(text) == units


@pytest.mark.parametrize(
    ("answer", "reference", "f1"),
    [
        ("🍕🍺", "🍕🍺", 1.0),
        ("🍺🍕", "🍕🍺", 1.0),  # order does not matter
        ("🍕🍺", "🍕🍷", 0.5),
        ("🍕", "🍕🍕", 2 / 3),  # multisets: a repeated emoji counts twice
        ("❤", "❤️", 1.0),  # variation selector 16 is presentation only
        ("👍", "👍🏽", 0.0),  # a different skin tone is a different emoji
        ("👨‍👩‍👧", "👨", 0.0),  # a ZWJ family is not its first member
        ("🇫🇷", "🇯🇵", 0.0),  # flags are not compared by their letters
        ("", "🍕", 0.0),  # empty output scores nothing
        ("pizza", "🍕", 0.0),
        ("", "", 1.0),
    ],
)
def test_emoji_f1(answer: str, reference: str, f1: float) -> None:
    assert emoji_metrics.emoji_f1(answer, reference) == pytest.approx(f1)


def test_mean_emoji_f1() -> None:
    assert emoji_metrics.mean_emoji_f1(["🍕", "x"], ["🍕", "🎉"]) == pytest.approx(0.5)
    assert emoji_metrics.mean_emoji_f1([], []) == 0.0
    with pytest.raises(ValueError):
        emoji_metrics.mean_emoji_f1(["🍕"], [])
