"""The training data: read Text2Emoji-style rows, validate them, sample and split them.

Every problem with the caller's data is an InputError raised before anything is written, so a
bad dataset fails the run at once with one line instead of after minutes of model loading.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gcs_object
import revisions
from config import InputArguments, InputError

PROMPT_PREFIX = "Translate to emoji: "
REQUIRED_COLUMNS = ("text", "emoji")
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv")


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
    if not path.read_text(encoding="utf-8", errors="replace").strip():
        raise InputError(f"dataset file {path} is empty; it needs rows with text and emoji")
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
