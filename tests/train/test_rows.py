"""Unit tests of the job's row check: which line of a JSON-lines file is not a Text2Emoji row."""

from __future__ import annotations

import pytest
from job_modules import job_module

rows = job_module("rows")

GOOD = '{"text": "I love pizza", "emoji": "❤️🍕", "topic": "food"}'


def test_well_formed_rows_and_blank_lines_pass() -> None:
    empty_answer = '{"text": "hi", "emoji": ""}'  # well formed; load_splits skips it as unusable
    assert rows.malformed_row([GOOD, "", "   ", empty_answer, GOOD]) is None
    assert rows.malformed_row([]) is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"text": "a", "emoji": ', "is not valid JSON (Expecting value at column 24)"),
        ('["a", "🍕"]', "is an array, not an object with text and emoji"),
        ('{"text": "a"}', "has no 'emoji' field"),
        ('{"emoji": "🍕"}', "has no 'text' field"),
        ('{"text": 5, "emoji": "🍕"}', "has 'text' as a number, not a string"),
        ('{"text": "a", "emoji": null}', "has 'emoji' as null, not a string"),
    ],
)
def test_the_first_bad_line_is_named_one_based(line: str, problem: str) -> None:
    assert rows.malformed_row([GOOD, "", line, line]) == (3, problem)
