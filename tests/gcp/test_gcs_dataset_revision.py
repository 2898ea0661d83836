"""A `gs://` dataset is addressed by its object generation (the GCS emulator, real client):
the run pins the live generation, or the one an event asked for, and the lineage records it."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from core.contracts import ConfigurationError
from flows.settings import PipelineSettings
from flows.training_job import pin_revisions

BUCKET = "emoji-dataset-revisions"


def settings_for(gcs_url: str, model: Path, uri: str, revision: str | None) -> PipelineSettings:
    return PipelineSettings(
        _env_file=None,  # type: ignore[call-arg]
        model={"base_model": str(model)},
        data={"dataset": uri, "revision": revision},
        gcp={"api_endpoints": {"storage": gcs_url}},
    )


def test_the_generation_is_the_revision_and_a_missing_one_is_refused(
    gcs_emulator: str, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator},
    )
    blob = client.create_bucket(BUCKET).blob("data/x.jsonl")
    blob.upload_from_string('{"text": "a", "emoji": "🍌", "topic": "food"}\n')
    uri = f"gs://{BUCKET}/data/x.jsonl"

    _, live = pin_revisions(settings_for(gcs_emulator, model, uri, None))
    assert live == str(blob.generation)
    _, pinned = pin_revisions(settings_for(gcs_emulator, model, uri, live))
    assert pinned == live

    with pytest.raises(ConfigurationError, match=r"data\.revision: .* has no generation '1'"):
        pin_revisions(settings_for(gcs_emulator, model, uri, "1"))
    with pytest.raises(ConfigurationError, match=r"data\.dataset: .* does not exist"):
        pin_revisions(settings_for(gcs_emulator, model, f"gs://{BUCKET}/data/none.csv", None))
