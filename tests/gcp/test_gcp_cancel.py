"""Cancelling a flow run through Prefect's API cancels the Cloud Run execution it waits on.

A real `prefect server`, the flow served by a real Prefect runner (`flow.serve`, which runs
each flow run in its own process and cancels one the way a worker does: SIGTERM), and the
gcp backend against the fake Google APIs, whose training execution stays running until
cancelled. So no L4 keeps billing after an operator presses *Cancel* in the UI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from tasks.backends.local.processes import stop_process_group
from tests.conftest import REPO_ROOT
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud
from tests.flow.prefect_server import running_server

DEPLOYMENT = "emoji-finetune/cancel-test"
RUN_JOB = "run.projects.locations.jobs.run"
CANCEL = "run.projects.locations.jobs.executions.cancel"
WAIT_S = 240
# Served by module path: a file-path entrypoint served from `python -c` loads the module under
# a name that leaves the flow's typed `settings` parameter unresolved.
SERVE = """
from prefect import serve
from flows.finetune import finetune_pipeline
deployment = finetune_pipeline.to_deployment(name="cancel-test")
deployment.entrypoint = "flows.finetune:finetune_pipeline"
serve(deployment)
"""


def wait_for(what: str, check: object, log: Path) -> object:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen in {WAIT_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture
def world(gcs_emulator: str) -> Iterator[FakeGoogleCloud]:
    with fake_google_cloud(gcs_emulator) as cloud:
        cloud.fake.execution_mode = "hold"  # training runs until someone cancels it
        yield cloud


def test_cancelling_the_flow_run_cancels_the_training_execution(
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    tmp_path: Path,
) -> None:
    settings = world.settings()
    env = {
        "PYTHONPATH": str(REPO_ROOT),
        "HF_TOKEN": "hf_cancelTestToken",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PIPELINE_BACKEND": "gcp",
        "PIPELINE_MODEL__BASE_MODEL": str(tiny_model_dir),
        "PIPELINE_DATA__DATASET": str(sample_dataset_path),
        "PIPELINE_DATA__SAMPLE_SIZE": "96",
        "PIPELINE_DATA__EVAL_SIZE": "8",
        "PIPELINE_TRAINING__TIMEOUT_S": "600",
        "PIPELINE_GCP__PROJECT": world.project,
        "PIPELINE_GCP__API_ENDPOINTS": f'{{"*": "{world.url}"}}',
        "PIPELINE_GCP__POLL_INTERVAL_S": str(settings.poll_interval_s),
        "PIPELINE_GCP__LISTING_SETTLE_S": str(settings.listing_settle_s),
    }
    log = tmp_path / "runner.log"
    with running_server(tmp_path / "home", tmp_path / "server.log") as (api_url, server_env):
        with log.open("w") as handle:
            runner = subprocess.Popen(
                [sys.executable, "-c", SERVE],
                env={**os.environ, **server_env, **env},
                cwd=REPO_ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            with (
                temporary_settings({PREFECT_API_URL: api_url}),
                get_client(sync_client=True) as client,
            ):
                _cancel_mid_training(client, world, log)
        finally:
            stop_process_group(runner.pid)


def _cancel_mid_training(client: SyncPrefectClient, world: FakeGoogleCloud, log: Path) -> None:
    """Start a run, wait until it trains, cancel it through the API, check the execution."""
    deployment = wait_for("deployment", lambda: _deployment(client), log)
    run = client.create_flow_run_from_deployment(deployment)  # type: ignore[arg-type]
    wait_for("training start", lambda: world.fake.calls(RUN_JOB), log)

    client.set_flow_run_state(run.id, Cancelling(), force=True)

    final = wait_for("cancellation", lambda: _final_state(client, run.id), log)
    assert final == "CANCELLED", log.read_text()[-3000:]
    (execution,) = world.executions()
    assert [c.path.lstrip("/").split("/", 1)[1] for c in world.fake.calls(CANCEL)] == [
        f"{execution}:cancel"
    ]
    assert world.fake.resource(execution)["cancelledCount"] == 1
    assert len(world.fake.calls(RUN_JOB)) == 1


def _deployment(client: SyncPrefectClient) -> UUID | None:
    try:
        return client.read_deployment_by_name(DEPLOYMENT).id
    except Exception:  # not registered yet
        return None


def _final_state(client: SyncPrefectClient, run_id: UUID) -> str | None:
    state = client.read_flow_run(run_id).state
    return state.type.value if state is not None and state.is_final() else None
