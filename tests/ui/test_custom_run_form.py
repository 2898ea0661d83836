"""The Prefect UI's *Custom run* form, driven in a real browser as an operator would use it.

Real `prefect server` (with its UI), real process worker configured by the demo `.env`
(deployments/demo.env), Debian's chromium through playwright-core (`tests/ui/setup.sh`). The
operator changes LoRA rank only; the run must train the `.env`'s model and data with rank 4,
not the code defaults the form used to pre-fill and submit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import REPO_ROOT
from tests.flow.prefect_server import prefect_command, running_server, running_worker

pytestmark = pytest.mark.ui

UI_DIR = Path(__file__).resolve().parent
DEMO_ENV = REPO_ROOT / "deployments" / "demo.env"
DEMO_MODEL_LINE = "PIPELINE_MODEL__BASE_MODEL=.pipeline/demo-assets/tiny-gemma3"
RUN_DEADLINE_S = 600


def demo_env_file(folder: Path, model_dir: Path) -> Path:
    """deployments/demo.env as `cp deployments/demo.env .env` gives it, with the tiny model
    this session built (instead of the one `make demo` builds under .pipeline/)."""
    text = DEMO_ENV.read_text()
    assert DEMO_MODEL_LINE in text, "demo.env no longer names the demo model where expected"
    env_file = folder / ".env"
    env_file.write_text(text.replace(DEMO_MODEL_LINE, f"PIPELINE_MODEL__BASE_MODEL={model_dir}"))
    return env_file


def env_value(env_file: Path, name: str) -> str:
    for line in env_file.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in {env_file}")


def submit_custom_run(ui_url: str, deployment_id: str, screenshot: Path) -> None:
    if shutil.which("node") is None or not (UI_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail("browser test prerequisites missing: run tests/ui/setup.sh (or make test-ui)")
    completed = subprocess.run(
        ["node", str(UI_DIR / "custom_run.mjs"), ui_url, deployment_id,
         "Lora R", "int", "4", str(screenshot)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr


def only_run_of(deployment_id: str, timeout_s: float = 60) -> FlowRun:
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            if runs:
                (run,) = runs
                return run
            time.sleep(0.5)
    raise AssertionError("the form created no flow run")


def wait_until_final(run: FlowRun) -> FlowRun:
    deadline = time.monotonic() + RUN_DEADLINE_S
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(1)
    raise AssertionError(f"flow run {run.name} did not finish in {RUN_DEADLINE_S} s")


def test_changing_one_field_keeps_the_workers_env_for_the_rest(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    env_file = demo_env_file(tmp_path, tiny_model_dir)
    store = tmp_path / "store"
    with running_server(tmp_path / "home", tmp_path / "server.log", ui=True) as (api_url, env):
        env = {
            **env,
            "PIPELINE_ENV_FILE": str(env_file),  # the worker's `.env`
            "PIPELINE_LOCAL__ROOT": str(store),  # the worker's own environment
            # Short, yet enough for the untuned demo base to learn emoji at the .env's rate.
            "PIPELINE_TRAINING__MAX_STEPS": "20",  # not a .env setting
        }
        for command in (["-m", "deployments.bootstrap"], ["-m", "prefect", "--no-prompt",
                                                          "deploy", "--all"]):  # fmt: skip
            subprocess.run([prefect_command()[0], *command], env=env, cwd=REPO_ROOT,
                           check=True, capture_output=True, timeout=180)  # fmt: skip
        with (
            temporary_settings(updates={PREFECT_API_URL: api_url}),
            running_worker("emoji-local", env, REPO_ROOT, tmp_path / "worker.log"),
        ):
            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name("emoji-finetune/local")
            submit_custom_run(
                api_url.removesuffix("/api"), str(deployment.id), tmp_path / "lora.png"
            )
            submitted = only_run_of(str(deployment.id))
            finished = wait_until_final(submitted)

    # What the form sent: LoRA rank, every other field empty (None), not a code default.
    training = submitted.parameters["settings"]["training"]
    assert training["lora_r"] == 4
    assert submitted.parameters["settings"]["model"]["base_model"] is None
    # What the run trained: the .env's model and data, the form's rank.
    (model_dir,) = (store / "models").iterdir()
    lineage = json.loads((model_dir / "MANIFEST.json").read_text())["lineage"]
    assert lineage["base_model"] == str(tiny_model_dir)
    assert lineage["dataset"] == env_value(env_file, "PIPELINE_DATA__DATASET")
    assert lineage["sample_size"] == int(env_value(env_file, "PIPELINE_DATA__SAMPLE_SIZE"))
    assert lineage["training"]["lora_r"] == 4
    assert lineage["training"]["learning_rate"] == float(
        env_value(env_file, "PIPELINE_TRAINING__LEARNING_RATE")
    )
    assert finished.state is not None and finished.state.is_completed(), finished.state
