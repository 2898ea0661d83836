"""The local backend's store, image snapshot and job runner, on real folders and processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.contracts import (
    ArtifactStore,
    ConfigurationError,
    ImageRef,
    Provisioner,
    Teardown,
    TrainingFailed,
    TrainJobSpec,
    TransientError,
)
from tasks.backends.local.backend import build_local_backend
from tasks.backends.local.image import LocalImageBuilder
from tasks.backends.local.job import LocalJobRunner
from tasks.backends.local.provision import LocalProvisioner
from tasks.backends.local.store import LocalFolderStore


def test_provisioning_is_idempotent_and_parts_satisfy_the_protocols(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    provisioner = LocalProvisioner(store)
    assert isinstance(store, ArtifactStore)
    assert isinstance(provisioner, Provisioner)
    assert not provisioner.is_ready()
    assert provisioner.ensure(on_log=lambda _: None).created == ("models", "runs", "logs")
    assert provisioner.ensure(on_log=lambda _: None).created == ()
    assert provisioner.is_ready()


def test_store_reads_ranges_and_refuses_escapes(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    (tmp_path / "models" / "k").mkdir(parents=True)
    (tmp_path / "models" / "k" / "a.bin").write_bytes(b"0123456789")
    assert store.list_files("models/k") == {"a.bin": 10}
    assert store.list_files("models/missing") == {}
    assert store.read_bytes("models/k/a.bin", 2, 3) == b"234"
    assert b"".join(store.iter_chunks("models/k/a.bin", chunk_size=4)) == b"0123456789"
    with pytest.raises(ValueError, match="escapes"):
        store.path("../outside")


def _fake_job(folder: Path, body: str) -> ImageRef:
    """A job image whose finetune.py is a small script (the real one is tested in tests/train)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "finetune.py").write_text(body)
    return ImageRef(uri=str(folder), content_hash="sha256:test")


WRITE_MANIFEST = """
import json, pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index('--output-dir') + 1])
out.mkdir(parents=True, exist_ok=True)
print('PROGRESS {"phase": "train", "step": 1, "total": 1}')
(out / 'MANIFEST.json').write_text(json.dumps({'lineage_key': args[args.index('--key') + 1]}))
"""


def _spec(key: str = "k1") -> TrainJobSpec:
    return TrainJobSpec(
        lineage_key=key, output_prefix=f"models/{key}", args=("--key", key), deadline_s=60
    )


def test_runner_trains_then_reuses_what_is_in_the_store(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    image = _fake_job(tmp_path / "image", WRITE_MANIFEST)
    runner = LocalJobRunner(store)
    progress: list[object] = []
    first = runner.run(image, _spec(), on_log=lambda _: None, on_progress=progress.append)
    assert not first.reused and len(progress) == 1
    second = runner.run(image, _spec(), on_log=lambda _: None, on_progress=progress.append)
    assert second.reused and len(progress) == 1  # nothing ran the second time
    assert not (tmp_path / "store" / "runs" / "k1.lock").exists()


def test_runner_maps_exit_codes_to_typed_errors(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    runner = LocalJobRunner(store)
    bad_input = _fake_job(
        tmp_path / "bad", "import sys\nprint('error: data has no emoji column')\nsys.exit(2)\n"
    )
    with pytest.raises(ConfigurationError, match="no emoji column"):
        runner.run(bad_input, _spec(), on_log=lambda _: None, on_progress=lambda _: None)
    crash = _fake_job(tmp_path / "crash", "raise SystemExit(1)\n")
    with pytest.raises(TrainingFailed, match="exited with code 1"):
        runner.run(crash, _spec(), on_log=lambda _: None, on_progress=lambda _: None)
    silent = _fake_job(tmp_path / "silent", "pass\n")
    with pytest.raises(TrainingFailed, match="no complete model"):
        runner.run(silent, _spec(), on_log=lambda _: None, on_progress=lambda _: None)


def test_runner_never_starts_a_second_execution_for_a_running_key(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    image = _fake_job(tmp_path / "image", WRITE_MANIFEST)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    lock = tmp_path / "store" / "runs" / "k1.lock"
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "execution": "other"}))
        with pytest.raises(TransientError, match="still running"):
            LocalJobRunner(store).run(
                image, _spec(), on_log=lambda _: None, on_progress=lambda _: None
            )
        assert not (tmp_path / "store" / "models" / "k1").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale and the next run takes over.
    outcome = LocalJobRunner(store).run(
        image, _spec(), on_log=lambda _: None, on_progress=lambda _: None
    )
    assert not outcome.reused and not lock.exists()


def test_image_snapshot_is_content_addressed(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    context = tmp_path / "job_image"
    context.mkdir()
    (context / "finetune.py").write_text("print(1)\n")
    builder = LocalImageBuilder(store)
    wanted = builder.image_for(context)
    assert builder.find(wanted) is None
    built = builder.build(context, on_log=lambda _: None)
    assert built.content_hash == wanted.content_hash and builder.find(wanted) is not None
    snapshot_mtime = Path(built.uri).stat().st_mtime_ns
    assert builder.build(context, on_log=lambda _: None) == built
    assert Path(built.uri).stat().st_mtime_ns == snapshot_mtime, "an existing image is reused"
    (context / "finetune.py").write_text("print(2)\n")
    assert builder.image_for(context).content_hash != wanted.content_hash
    # The snapshot keeps the code that was built, whatever happens to the checkout.
    assert (Path(wanted.uri) / "finetune.py").read_text() == "print(1)\n"


def test_teardown_stops_the_live_server_and_deletes_only_on_request(tmp_path: Path) -> None:
    backend = build_local_backend(
        tmp_path / "store", engine="transformers", host="127.0.0.1", port=0
    )
    assert isinstance(backend.teardown, Teardown)
    store = tmp_path / "store"
    (store / "models" / "k1").mkdir(parents=True)
    (store / "images" / "i1").mkdir(parents=True)
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    (store / "serving.json").write_text(
        json.dumps({"base_url": "http://127.0.0.1:1", "model": "m", "engine": "transformers",
                    "server_id": str(server.pid)})
    )  # fmt: skip
    logs: list[str] = []
    assert backend.teardown.stop_serving(logs.append) is True
    assert server.wait(timeout=15) is not None
    assert not (store / "serving.json").exists()
    assert backend.teardown.stop_serving(logs.append) is False
    assert backend.teardown.delete_job(logs.append) is False
    assert (store / "models" / "k1").is_dir()  # models are kept unless asked
    assert backend.teardown.delete_images(logs.append) == 1
    assert backend.teardown.delete_models(logs.append) == 1
    assert not any((store / "models").iterdir())
