"""A plain (non-editable) `pip install .` carries everything the pipeline reads at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_a_non_editable_install_ships_the_job_image(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO_ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    probe = (
        "import flows.training_job as m, deployments, json, pathlib;"
        "print(m.__file__); print(json.dumps([p.name for p in m.JOB_IMAGE_DIR.iterdir()]));"
        "print(json.dumps([p.name for p in pathlib.Path(deployments.__file__).parent.iterdir()]));"
        "import tasks.backends.local.openai_front as front; print(front.__file__)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe],
        check=True, capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()  # fmt: skip
    assert shown[0].startswith(str(target)), "imported the installed copy, not the checkout"
    shipped = set(json.loads(shown[1]))
    expected = {p.name for p in (REPO_ROOT / "job_image").iterdir() if p.name != "__pycache__"}
    assert expected <= shipped, f"missing from the package: {sorted(expected - shipped)}"
    assert {"demo.env", "cloud-run-v2-base-job-template.json"} <= set(json.loads(shown[2]))
    assert shown[3].startswith(str(target)), "the local server's front runs from the package"
