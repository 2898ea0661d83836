"""Preflight of a local dataset file: every row readable, in Text2Emoji's schema.

The training job validates its rows too, but only after it has started (on gcp: after an
image build, a job start and a model download). Reading the file here first turns a broken
row into one line naming the 1-based line of the file, before anything is created. The job
stays standalone, so this is the flow's own reading of the same rules: each row is an object
with string `text` and `emoji` (rows where either is blank are skipped by the job, so they
count as unusable, not as errors).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.contracts import ConfigurationError

REQUIRED_COLUMNS = ("text", "emoji")
Row = tuple[str, Any]  # ("line 7" — 1-based, or "row 7" of a JSON array, the parsed row)


def check_dataset_rows(path: Path, sample_size: int) -> int:
    """Number of usable rows; ConfigurationError on the first malformed row or too few rows."""
    usable = 0
    for where, row in _rows(path):
        problem = _row_problem(row)
        if problem:
            raise ConfigurationError(
                f"data.dataset: {path} {where}: {problem}; each row needs string "
                f"columns {' and '.join(REQUIRED_COLUMNS)} (fix or delete the line)"
            )
        usable += all(row[column].strip() for column in REQUIRED_COLUMNS)
    if usable < sample_size:
        raise ConfigurationError(
            f"data.sample_size ({sample_size}) exceeds the {usable} usable rows of {path}; "
            "lower PIPELINE_DATA__SAMPLE_SIZE or --sample-size"
        )
    return usable


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"expected an object with {', '.join(REQUIRED_COLUMNS)}, got {type(row).__name__}"
    missing = [column for column in REQUIRED_COLUMNS if column not in row]
    if missing:
        return f"missing column {', '.join(missing)}"
    wrong = [column for column in REQUIRED_COLUMNS if not isinstance(row[column], str)]
    if wrong:
        return f"column {', '.join(wrong)} is not a string"
    return None


def _rows(path: Path) -> Iterator[Row]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            f"data.dataset: {path} is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    if path.suffix.lower() == ".csv":
        yield from _csv_rows(text)
    elif path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        yield from _json_array_rows(path, text)
    else:
        yield from _json_lines(path, text)


def _json_lines(path: Path, text: str) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigurationError(
                f"data.dataset: {path} line {number}: not valid JSON ({error.msg} at column "
                f"{error.colno}); each line must be one JSON object (fix or delete the line)"
            ) from None


def _json_array_rows(path: Path, text: str) -> Iterator[Row]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"data.dataset: {path} line {error.lineno}: not valid JSON ({error.msg})"
        ) from None
    if not isinstance(rows, list):
        rows = [rows]
    yield from ((f"row {number}", row) for number, row in enumerate(rows, start=1))


def _csv_rows(text: str) -> Iterator[Row]:
    reader = csv.DictReader(text.splitlines())
    for row in reader:
        yield (
            f"line {reader.line_num}",
            {key: value for key, value in row.items() if key is not None},
        )
