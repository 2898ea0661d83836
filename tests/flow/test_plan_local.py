"""`python -m flows.finetune --plan` on the local backend, run as an operator types it: it
prints the resolved inputs, the lineage key and every step's action, and touches nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_plan_prints_what_a_run_would_do_and_creates_nothing(
    tmp_path: Path, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    store = tmp_path / "store"
    command = [sys.executable, "-m", "flows.finetune", "--plan", "--store", str(store),
               "--base-model", str(tiny_model_dir), "--dataset", str(sample_dataset_path),
               "--sample-size", "96", "--eval-size", "8", "--lora-r", "8"]  # fmt: skip
    # The flow starts a temporary Prefect server; give it time on a busy machine.
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    completed = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, env=env
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "plan    backend local; nothing was changed" in out
    assert "input   training = lora_r=8, method=lora" in out
    assert f"would create      folder {store.resolve()}/models" in out
    for line in ("build     would build", "train     would train", "deploy    would deploy"):
        assert line in out, out
    assert "cost    total (upper bound): $0.00" in out
    assert not store.exists(), "plan mode must not provision, build or train"
