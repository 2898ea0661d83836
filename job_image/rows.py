"""The training data: read Text2Emoji-style rows, validate them, sample and split them.

Every problem with the caller's data is an InputError raised before anything is written, so a
bad dataset fails the run at once with one line instead of after minutes of model loading.
A local JSON-lines file is checked line by line first (`malformed_row`, pure, so a caller can
run the same check before starting the job): a broken row is named by its 1-based line number
instead of being dropped silently or reported by the parser as a 0-based row.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gcs_object
import revisions
from config import InputArguments, InputError

PROMPT_PREFIX = "Translate to emoji: "
REQUIRED_COLUMNS = ("text", "emoji")
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv")
JSON_LINES_SUFFIX = ".jsonl"
JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
                   int: "a number", float: "a number", type(None): "null"}  # fmt: skip


@dataclass(frozen=True)
class Splits:
    """The held-out and training rows (conversational), and the data's exact revision."""

    eval_rows: Any
    train_rows: Any
    revision: str


def load_splits(inputs: InputArguments) -> Splits:
    """Validate, shuffle (seeded) and split the data into disjoint eval and train rows."""
    data, revision = read_dataset(inputs)
    missing = [column for column in REQUIRED_COLUMNS if column not in data.column_names]
    if missing:
        raise InputError(
            f"dataset lacks column(s) {missing} (has {data.column_names}); "
            "it needs Text2Emoji's schema: text, emoji"
        )
    data = data.filter(
        lambda row: all(isinstance(row[c], str) and row[c].strip() for c in REQUIRED_COLUMNS)
    )
    if len(data) == 0:
        raise InputError(f"dataset {inputs.dataset!r} has no rows with non-empty text and emoji")
    if inputs.sample_size > len(data):
        raise InputError(
            f"--sample-size {inputs.sample_size} exceeds the {len(data)} usable rows; lower it"
        )
    sample = data.shuffle(seed=inputs.seed).select(range(inputs.sample_size))
    sample = sample.map(to_messages, remove_columns=sample.column_names)
    return Splits(
        eval_rows=sample.select(range(inputs.eval_size)),
        train_rows=sample.select(range(inputs.eval_size, len(sample))),
        revision=revision,
    )


def to_messages(row: dict[str, Any]) -> dict[str, Any]:
    """One Text2Emoji row as a chat: the answer is the emoji string, nothing else."""
    return {
        "messages": [
            {"role": "user", "content": PROMPT_PREFIX + row["text"].strip()},
            {"role": "assistant", "content": row["emoji"].strip()},
        ]
    }


def malformed_row(lines: Iterable[str]) -> tuple[int, str] | None:
    """(1-based line number, what is wrong) of the first line that is not a Text2Emoji row.

    A row is one JSON object whose `text` and `emoji` are strings (empty strings are well
    formed; `load_splits` skips such rows as unusable). Blank lines are allowed, as JSON-lines
    readers skip them. None when every line is a row.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return number, f"is not valid JSON ({exc.msg} at column {exc.colno})"
        if not isinstance(row, dict):
            return number, f"is {_json_type(row)}, not an object with text and emoji"
        for column in REQUIRED_COLUMNS:
            if column not in row:
                return number, f"has no {column!r} field"
            if not isinstance(row[column], str):
                return number, f"has {column!r} as {_json_type(row[column])}, not a string"
    return None


def _json_type(value: object) -> str:
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def read_dataset(inputs: InputArguments) -> tuple[Any, str]:
    """(raw rows, exact revision): a local .jsonl/.csv file, or a hub dataset at a revision."""
    if gcs_object.is_gcs_uri(inputs.dataset):  # the exact generation the lineage records
        folder = Path(tempfile.mkdtemp(prefix="dataset-"))
        local = gcs_object.download_generation(inputs.dataset, inputs.dataset_revision, folder)
        return _read_local(local), str(inputs.dataset_revision)
    path = Path(inputs.dataset).expanduser()
    if path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
        return _read_local(path), revisions.local_revision(path)
    return _read_hub(inputs), revisions.hub_dataset_commit(inputs.dataset, inputs.dataset_revision)


def _read_local(path: Path) -> Any:
    from datasets import load_dataset

    if not path.is_file():
        raise InputError(f"dataset file {path} does not exist; pass a .jsonl/.csv path")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise InputError(f"dataset file {path} is empty; it needs rows with text and emoji")
    problem = malformed_row(text.splitlines()) if path.suffix.lower() == JSON_LINES_SUFFIX else None
    if problem is not None:
        line, what = problem
        raise InputError(
            f"dataset file {path} line {line} {what}; each line must be a JSON object with "
            'string "text" and "emoji" fields (fix or remove that line)'
        )
    builder = "csv" if path.suffix.lower() == ".csv" else "json"
    try:
        return load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # any parse failure of a local file is the caller's to fix
        reason = exc.__cause__ or exc
        raise InputError(f"dataset file {path} could not be parsed ({reason})") from exc


def _read_hub(inputs: InputArguments) -> Any:
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub import constants

    try:
        return load_dataset(inputs.dataset, revision=inputs.dataset_revision, split="train")
    except DatasetNotFoundError as exc:
        raise InputError(
            f"dataset {inputs.dataset!r} not found on the hub; check id/revision"
        ) from exc
    except ConnectionError as exc:
        if not constants.HF_HUB_OFFLINE:
            raise  # hub unreachable while online: transient, exit 1
        raise InputError(
            f"dataset {inputs.dataset!r} is not a local file and the hub is offline "
            "(HF_HUB_OFFLINE=1); pass a .jsonl/.csv path"
        ) from exc
