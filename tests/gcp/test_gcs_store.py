"""The GCS store through the real emulator, and verification reading a model from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.contracts import ArtifactStore, VerificationFailed
from core.verification import manifest_digest, verify_model
from tasks.backends.gcp.backend import build_gcp_backend
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud

KEY = "feedfacecafebeef"
PROMPT = "Translate to emoji: I ate a banana for breakfast"


@pytest.fixture
def world(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleCloud]:
    monkeypatch.setenv("HF_TOKEN", "hf_storeTests")
    with fake_google_cloud(gcs_emulator) as cloud:
        yield cloud


@pytest.fixture
def store(world: FakeGoogleCloud) -> ArtifactStore:
    backend = build_gcp_backend(world.settings())
    backend.provisioner.ensure(on_log=lambda _: None)
    return backend.store


def publish(world: FakeGoogleCloud, model_dir: Path, key: str = KEY) -> None:
    args = [
        "--output-dir",
        f"/mnt/store/models/{key}",
        "--lineage-key",
        key,
        "--lineage-json",
        "{}",
    ]
    world.publish_model(model_dir, args)


def test_lists_sizes_reads_ranges_and_streams_chunks(
    world: FakeGoogleCloud, store: ArtifactStore
) -> None:
    assert isinstance(store, ArtifactStore)
    bucket = world.storage.bucket(world.names.bucket)
    bucket.blob("models/k/a.bin").upload_from_string(bytes(range(256)) * 4)
    bucket.blob("models/k/sub/b.txt").upload_from_string(b"hello")

    assert store.list_files("models/k") == {"a.bin": 1024, "sub/b.txt": 5}
    assert store.list_files("models/absent") == {}
    assert store.read_bytes("models/k/a.bin", 250, 10) == bytes(
        [250, 251, 252, 253, 254, 255, 0, 1, 2, 3]
    )
    assert store.read_bytes("models/k/sub/b.txt") == b"hello"
    assert store.read_bytes("models/k/sub/b.txt", 1, 0) == b""
    assert b"".join(store.iter_chunks("models/k/a.bin", chunk_size=100)) == bytes(range(256)) * 4
    with pytest.raises(FileNotFoundError):
        store.read_bytes("models/k/missing")
    with pytest.raises(FileNotFoundError):
        list(store.iter_chunks("models/k/missing"))
    assert store.uri_for("models/k") == f"gs://{world.names.bucket}/models/k"


def test_verification_reads_a_model_from_gcs_and_catches_a_truncated_upload(
    world: FakeGoogleCloud, store: ArtifactStore, tiny_model_dir: Path
) -> None:
    publish(world, tiny_model_dir)

    verified = verify_model(
        store, f"models/{KEY}", expected_lineage_key=KEY, generation_prompt=PROMPT
    )
    assert verified.tensor_count > 0 and verified.sample_answer is None  # no local folder
    assert manifest_digest(store, f"models/{KEY}") == verified.manifest_sha256

    bucket = world.storage.bucket(world.names.bucket)
    weights = bucket.blob(f"models/{KEY}/model.safetensors")
    data = weights.download_as_bytes()
    weights.upload_from_string(data[: len(data) // 2])
    manifest = json.loads(bucket.blob(f"models/{KEY}/MANIFEST.json").download_as_bytes())
    assert manifest["files"]["model.safetensors"]["size"] == len(data)
    with pytest.raises(VerificationFailed, match=r"model\.safetensors"):
        verify_model(store, f"models/{KEY}", expected_lineage_key=KEY, generation_prompt=PROMPT)
