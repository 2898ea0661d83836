"""The job image's Python environment, exactly as pinned, runs the job end to end.

`make test-image-pins` builds a venv from job_image/requirements.txt alone (torch at the pinned
version from the local CPU wheel, every other pin with --no-deps) and points JOB_PYTHON at it.
This proves what a container build would: the pins install together, import, and train,
merge, evaluate and publish a model — here on the tiny model, with both methods.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_finetune_cli import PUBLISHED_FILES, SMALL, job_args, run_script

REQUIREMENTS = Path(__file__).resolve().parents[2] / "job_image" / "requirements.txt"
JOB_PYTHON = os.environ.get("JOB_PYTHON", "")

pytestmark = [
    pytest.mark.image_pins,
    pytest.mark.skipif(not JOB_PYTHON, reason="JOB_PYTHON unset: run `make test-image-pins`"),
]


def pinned() -> dict[str, str]:
    """name -> version of every pin in requirements.txt (names normalised like pip's)."""
    pins = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_venv_holds_exactly_the_pins() -> None:
    listed = subprocess.run(
        [JOB_PYTHON, "-m", "pip", "list", "--format=json", "--exclude", "pip"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {
        item["name"].lower().replace("_", "-"): item["version"].split("+")[0]  # 2.13.0+cpu
        for item in json.loads(listed.stdout)
    }
    assert installed == pinned()


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_the_pinned_job_trains_and_publishes(
    tiny_model_dir: Path, sample_dataset_path: Path, tmp_path: Path, method: str
) -> None:
    output_dir = tmp_path / "models" / f"key-{method}"
    args = job_args(tiny_model_dir, sample_dataset_path, output_dir, f"key-{method}", *SMALL)
    extra = ["--method", method, "--max-steps", "4", "--checkpoint-steps", "2"]
    run = run_script([*args, *extra], cwd=tmp_path, python=JOB_PYTHON)
    assert run.returncode == 0, run.stderr[-4000:]
    manifest = json.loads((output_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    assert set(manifest["files"]) == PUBLISHED_FILES
    assert manifest["training"]["method"] == method and manifest["training"]["steps"] == 4
    assert all(isinstance(manifest["metrics"][k], float) for k in ("eval_loss", "base_eval_loss"))
