"""Bad input on the command line: one `error:` line naming the fix, exit 2, nothing created.

Each case runs the real CLI in a subprocess, as an operator would, and checks what they see
(stderr), what the shell sees (the exit code) and what the machine keeps (no store folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.backends.local.processes import free_port
from tests.conftest import REPO_ROOT, SAMPLE_DATASET
from tests.fakes.canned_http import canned_http

HUB_MODEL = "google/gemma-3-1b-it"


@pytest.fixture(scope="module")
def hub_without_the_repo() -> Iterator[str]:
    """The hub's answer to an anonymous client for a repository id that does not exist."""
    headers = {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
    with canned_http(401, b'{"error": "Repository not found"}', headers) as url:
        yield url


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """stderr of a failed run; asserts the run failed cleanly and created nothing."""
    store = tmp_path / "store"
    completed = subprocess.run(
        [sys.executable, "-m", "flows.finetune", "--store", str(store), *args],
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    stderr = completed.stderr.strip()
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: "), stderr
    assert not stderr.startswith("error: error:")
    assert not store.exists(), "nothing may be created before the input is valid"
    return stderr


def test_unreachable_hub_while_online(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": closed}
    stderr = run_cli(
        tmp_path,
        "--base-model",
        HUB_MODEL,
        "--dataset",
        str(SAMPLE_DATASET),
        "--sample-size",
        "100",
        env=online,
    )
    assert "cannot resolve the current revision of model 'google/gemma-3-1b-it'" in stderr
    assert "PIPELINE_MODEL__REVISION" in stderr


def test_unknown_hub_id(tmp_path: Path, hub_without_the_repo: str) -> None:
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub_without_the_repo}
    stderr = run_cli(
        tmp_path, "--base-model", "nobody/no-such-model", "--dataset", str(SAMPLE_DATASET),
        "--sample-size", "100", env=online,
    )  # fmt: skip
    assert "model.base_model: model 'nobody/no-such-model' not found on the hub" in stderr


def test_malformed_row_names_its_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = SAMPLE_DATASET.read_text().splitlines()
    broken = tmp_path / "rows.jsonl"
    broken.write_text("\n".join([*rows[:2], '{"text": "no closing brace"', *rows[2:]]) + "\n")
    stderr = run_cli(tmp_path, "--base-model", str(tiny_model_dir), "--dataset", str(broken))
    assert f"{broken} line 3: not valid JSON" in stderr


def test_row_with_a_wrong_type_names_its_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = SAMPLE_DATASET.read_text().splitlines()
    broken = tmp_path / "rows.jsonl"
    broken.write_text("\n".join([*rows[:4], '{"text": "ok", "emoji": 7}', *rows[4:]]) + "\n")
    stderr = run_cli(tmp_path, "--base-model", str(tiny_model_dir), "--dataset", str(broken))
    assert "line 5: column emoji is not a string" in stderr


def test_too_few_rows_for_the_sample(tmp_path: Path, tiny_model_dir: Path) -> None:
    stderr = run_cli(
        tmp_path, "--base-model", str(tiny_model_dir), "--dataset", str(SAMPLE_DATASET),
        "--sample-size", "5000",
    )  # fmt: skip
    assert "data.sample_size (5000) exceeds the 400 usable rows" in stderr
    assert "--sample-size" in stderr


def test_bad_region_names_its_variable_and_option(tmp_path: Path) -> None:
    stderr = run_cli(
        tmp_path, "--backend", "gcp", "--gcp-project", "my-project-1", "--gcp-region", "mars-1"
    )
    assert "invalid setting gcp.region='mars-1'" in stderr
    assert "PIPELINE_GCP__REGION or --gcp-region" in stderr
