"""Which checkpoints a restarted job may resume from (stdlib only, no training)."""

from __future__ import annotations

from pathlib import Path

from job_modules import job_module

checkpoints = job_module("checkpoints")


def _checkpoint(folder: Path, step: int, sealed: bool) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if sealed:
        checkpoints.mark_complete(path)
    return path


def test_folder_is_a_sibling_of_the_output_dir(tmp_path: Path) -> None:
    output = tmp_path / "models" / "abc"
    assert checkpoints.folder_for(output) == tmp_path / "models" / "abc.checkpoints"


def test_last_complete_skips_and_removes_unsealed_checkpoints(tmp_path: Path) -> None:
    logs: list[str] = []
    _checkpoint(tmp_path, 2, sealed=True)
    ten = _checkpoint(tmp_path, 10, sealed=True)  # numeric, not lexical, order
    cut_short = _checkpoint(tmp_path, 12, sealed=False)
    assert checkpoints.last_complete(tmp_path, logs.append) == ten
    assert not cut_short.exists() and any("interrupted" in line for line in logs)
    assert checkpoints.last_complete(tmp_path / "absent", logs.append) is None


def test_prepare_keeps_own_checkpoints_and_drops_another_keys(tmp_path: Path) -> None:
    folder = tmp_path / "m.checkpoints"
    checkpoints.prepare(folder, "key-a", print)
    kept = _checkpoint(folder, 4, sealed=True)
    checkpoints.save_base_metrics(folder, {"eval_loss": 1.5})
    checkpoints.prepare(folder, "key-a", print)
    assert kept.exists() and checkpoints.load_base_metrics(folder) == {"eval_loss": 1.5}
    checkpoints.prepare(folder, "key-b", print)
    assert not kept.exists() and checkpoints.load_base_metrics(folder) is None
    checkpoints.remove(folder, print)
    assert not folder.exists()
