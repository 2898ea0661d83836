"""`models list` on the gcp backend: versions read from the bucket (the GCS emulator), the
serving one from the Cloud Run service's traffic split (the API fake) — and nothing mutated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.model_versions import INCOMPLETE, PASSED
from flows.models import collect_versions
from flows.settings import PipelineSettings
from tasks.backends.gcp.backend import build_gcp_backend
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud


@pytest.fixture
def world(gcs_emulator: str) -> Iterator[FakeGoogleCloud]:
    with fake_google_cloud(gcs_emulator) as cloud:  # bootstrapped: APIs on, bucket made
        yield cloud


def publish(world: FakeGoogleCloud, model_dir: Path, key: str, lora_r: int) -> None:
    training = {"lora_r": lora_r, "method": "qlora"}
    lineage = {"base_model": "tiny", "base_model_revision": "sha256:00", "dataset": "d.jsonl",
               "dataset_revision": "sha256:11", "training": training}  # fmt: skip
    args = ["--output-dir", f"/mnt/store/models/{key}", "--lineage-key", key,
            "--lineage-json", json.dumps(lineage)]  # fmt: skip
    world.publish_model(model_dir, args)


def test_versions_and_the_revision_with_traffic_are_listed_read_only(
    world: FakeGoogleCloud, tiny_model_dir: Path
) -> None:
    older, newer, partial = "1111aaaa00000000", "2222bbbb00000000", "3333cccc00000000"
    publish(world, tiny_model_dir, older, lora_r=16)
    publish(world, tiny_model_dir, newer, lora_r=8)
    bucket = world.storage.bucket(world.names.bucket)
    bucket.blob(f"models/{partial}/model.safetensors").upload_from_string(b"half")
    settings = PipelineSettings(
        _env_file=None,  # type: ignore[call-arg]
        backend="gcp",
        gcp=world.settings(allow_unauthenticated=True),
    )
    server = build_gcp_backend(settings.gcp).server
    server.promote(server.deploy(f"models/{newer}", "emoji-gemma", 60))
    before = len(world.fake.mutations())

    versions = {v.key: v for v in collect_versions(settings)}

    assert len(world.fake.mutations()) == before, "listing must only read"
    assert versions[older].verdict == versions[newer].verdict == PASSED
    assert versions[partial].verdict == INCOMPLETE
    assert versions[newer].serving.startswith("100% of service emoji-gemma (revision ")
    assert versions[older].serving == versions[partial].serving == ""
    assert versions[newer].changed_settings == {"lora_r": 8, "method": "qlora"}
