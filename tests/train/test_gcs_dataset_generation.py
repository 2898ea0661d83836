"""The training job reads exactly the generation of a `gs://` dataset the run pinned, not the
live object (the GCS emulator, with object versioning on: two generations coexist)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from job_modules import job_module

from tests.gcp.events_world import memory_gcs

rows = job_module("rows")
config = job_module("config")


def lines(marker: str) -> str:
    return "".join(
        json.dumps({"text": f"{marker} row {i}", "emoji": "🍌", "topic": "food"}) + "\n"
        for i in range(6)
    )


@pytest.fixture
def gcs_emulator(tmp_path: Path) -> Iterator[str]:
    """Its own emulator on the memory backend: the shared one cannot keep generations."""
    with memory_gcs(tmp_path / "gcs.log") as url:
        yield url


def test_the_job_trains_on_the_pinned_generation(
    gcs_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator},
    )
    bucket = client.bucket("emoji-job-datasets")
    bucket.versioning_enabled = True
    client.create_bucket(bucket)
    blob = bucket.blob("data/text2emoji.jsonl")
    blob.upload_from_string(lines("first"))
    first = str(blob.generation)
    blob.upload_from_string(lines("second"))  # the live object now holds other rows
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)

    def inputs(revision: str) -> object:
        return config.InputArguments(
            model="m", model_revision=None, dataset="gs://emoji-job-datasets/data/text2emoji.jsonl",
            dataset_revision=revision, sample_size=4, eval_size=1, seed=0,
        )  # fmt: skip

    splits = rows.load_splits(inputs(first))

    assert splits.revision == first
    texts = [m["messages"][0]["content"] for m in [*splits.eval_rows, *splits.train_rows]]
    assert texts and all("first row" in text for text in texts)
    with pytest.raises(config.InputError, match="generation 1: HTTP 404"):
        rows.load_splits(inputs("1"))
