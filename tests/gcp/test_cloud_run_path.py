"""The `cloud-run` deployment's whole path, offline: bootstrap → deploy → a run → its report.

One test chains what the other gcp tests check piece by piece, each step through its own entry
point against a real Prefect server (the test harness) and the offline Google world:

1. `python -m deployments.bootstrap --gcp-project P --results-bucket B` on a fresh project
   (the admin's Google bootstrap, the pools, the results block);
2. `python -m deployments.deploy_gcp --gcp-project P` (orchestrator image, pool, deployment);
3. a flow run of `emoji-finetune/cloud-run` created as the UI's Custom run does;
4. the cloud-run-v2 worker's own rendering and `JobV2.create` of its job body into the fake;
5. the job's container, played by a subprocess: the job body's command and environment, plus
   only what the test must add (below), so the run reports to the API like a container would;
6. the outcome read back from Prefect and Cloud Run: state, report with cost, progress, logs
   from Cloud Logging, the service's traffic.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.testing.utilities import prefect_test_harness

from deployments import bootstrap, deploy_gcp
from flows.settings import env_variable
from tasks.report import REPORT_KEY
from tests.conftest import REPO_ROOT
from tests.fakes.canned_http import canned_http
from tests.fakes.credentials import metadata_server, operator_adc
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud
from tests.gcp.cloud_run_worker import (
    DEPLOYMENT,
    service_traffic,
    submit_like_the_worker,
    submitted_container,
    training_progress,
    worker_configuration,
)

# 600 s × (1 L4 × 0.0001867 + 8 vCPU × 0.000018 + 32 GiB × 0.000002) $/s
TRAINING_COST = "training job: 600 GPU-s + 4800 vCPU-s + 19200 GiB-s = $0.2368"
COST_SECTION = "Cost (estimate)"
CLOUD_LOGGING_LINE = "merged adapter into the base model"  # a line only the job prints
EMOJI_ANSWER = json.dumps({"choices": [{"message": {"content": "🎉🍰"}}]}).encode()


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def fresh_project(
    gcs_emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGoogleCloud]:
    """A project nobody bootstrapped yet, and an admin's shell pointed at it: application-
    default credentials of a user (prefect-gcp's block reads them when created; nothing is
    called with them), the project's settings in the environment, every API at the fake."""
    adc = operator_adc(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("HF_TOKEN", "hf_cloudRunPathToken0123456789")
    with fake_google_cloud(gcs_emulator, bootstrapped=False) as world:
        for name, value in world.gcp_values().items():  # short waits: the fake answers at once
            monkeypatch.setenv(env_variable(f"gcp.{name}"), str(value))
        monkeypatch.setenv("PIPELINE_GCP__API_ENDPOINTS", json.dumps({"*": world.url}))
        yield world


def run_from_the_ui(tiny_model_dir: Path, dataset: Path) -> UUID:
    """A Custom run of the deployment with small settings (the gcp ones come from the pool)."""
    settings = {
        "model": {"base_model": str(tiny_model_dir)},
        "data": {"dataset": str(dataset), "sample_size": 96, "eval_size": 8},
        "training": {"max_steps": 6, "max_length": 96, "timeout_s": 600},
        "serving": {"startup_timeout_s": 120},
    }
    flow_run = run_deployment(DEPLOYMENT, parameters={"settings": settings}, timeout=0)
    return flow_run.id  # type: ignore[union-attr]


def work_from_the_repo_root() -> None:
    """The deployment's pull step changes into /app, where the image holds the code; this
    machine has no /app, so the test re-registers that one step to point at the checkout."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}
        ]
        here = [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}]
        client.update_deployment(deployment.id, DeploymentUpdate(pull_steps=here))


def container_environment(
    job_env: dict[str, str], world: FakeGoogleCloud, metadata: str, scratch: Path
) -> dict[str, str]:
    """The job body's environment, plus only what the test must add, on a base without this
    shell's Prefect, pipeline or Google settings (a container starts from its image's):

    * Prefect: the worker hands the job its own `PREFECT_API_URL` (the harness's here, already
      in the body); a new container has an empty `PREFECT_HOME`;
    * Google: in real life the container talks to Google; here every pipeline API goes to the
      fake (`PIPELINE_GCP__API_ENDPOINTS`), the results block's storage client to the emulator
      (`STORAGE_EMULATOR_HOST`, read by google-cloud-storage itself), and its application-
      default credentials come from a metadata server, as on Cloud Run (no key file, no
      gcloud configuration);
    * this checkout's code (the image installs it) and INFO logging, so the run's log lines
      reach the API (the suite logs at WARNING).
    """
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PIPELINE_", "PREFECT_", "GOOGLE_", "CLOUDSDK_", "HF_TOKEN"))
    }
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **base,
        "PIPELINE_ENV_FILE": os.environ["PIPELINE_ENV_FILE"],  # no developer's .env
        **job_env,
        "PREFECT_HOME": str(scratch / "prefect-home"),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PIPELINE_GCP__API_ENDPOINTS": json.dumps({"*": world.url}),
        "STORAGE_EMULATOR_HOST": world.gcs_url,
        "GCE_METADATA_HOST": metadata,
        "GCE_METADATA_IP": metadata,
        "CLOUDSDK_CONFIG": str(scratch / "no-gcloud"),
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
    }


def run_the_container(
    world: FakeGoogleCloud, container: dict[str, Any], model: Path, scratch: Path
) -> subprocess.CompletedProcess[str]:
    """The job's container: its command (`prefect flow-run execute`, from this venv) and its
    environment; the training execution publishes `model`, the smoke test gets emoji."""
    world.fake.execution_seconds = 600  # the execution's completionTime = startTime + 600 s
    world.fake.on_execution = lambda args: world.publish_model(model, args)
    job_env = {item["name"]: item["value"] for item in container["env"]}
    program, *rest = container["command"]
    with (
        canned_http(200, EMOJI_ANSWER, {}) as served,  # the smoke test's peer; no model loads
        metadata_server(world.project, world.names.account_email("runner")) as metadata,
    ):
        world.fake.service_url = served
        world.fake.url_for_tag = lambda tag: served
        return subprocess.run(
            [str(Path(sys.executable).with_name(program)), *rest, *container.get("args", [])],
            env=container_environment(job_env, world, metadata, scratch),
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


def flow_run_logs(flow_run_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


def test_bootstrap_deploy_and_a_run_on_the_workers_job_body_report_cost_progress_and_logs(
    harness: None,
    fresh_project: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    tmp_path: Path,
) -> None:
    world = fresh_project
    bucket = world.names.bucket
    assert bootstrap.main(["--gcp-project", world.project, "--results-bucket", bucket]) == 0
    assert deploy_gcp.main(["--gcp-project", world.project]) == 0
    work_from_the_repo_root()

    flow_run_id = run_from_the_ui(tiny_model_dir, sample_dataset_path)
    config = asyncio.run(worker_configuration(flow_run_id))
    submit_like_the_worker(world, config)
    container = submitted_container(world, config)
    job_env = {item["name"]: item["value"] for item in container["env"]}
    assert job_env["PREFECT__FLOW_RUN_ID"] == str(flow_run_id), "the body runs this flow run"
    assert "PIPELINE_GCP__API_ENDPOINTS" not in job_env, "test hooks never reach Cloud Run"

    run = run_the_container(world, container, tiny_model_dir, tmp_path)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts()
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    (report,) = [a for a in artifacts if a.key == REPORT_KEY and a.flow_run_id == flow_run_id]
    assert COST_SECTION in str(report.data) and f"- {TRAINING_COST}" in str(report.data)
    (lineage_key,) = {
        a.key[len("training-") :] for a in artifacts if a.key and a.key.startswith("training-")
    }
    assert training_progress(lineage_key) == [100.0], "the job's last PROGRESS line completes it"
    assert CLOUD_LOGGING_LINE in flow_run_logs(flow_run_id), "the job's output, from Cloud Logging"
    ((revision, percent),) = service_traffic(world)
    assert percent == 100 and revision.startswith(f"{world.names.service_id}-{lineage_key[:8]}-")
    assert len(world.executions()) == 1
    records = {name.partition("-gcp-")[0] for name in world.objects() if "-gcp-" in name}
    assert {"provision", "build", "train", "verify"} <= records, (
        "the steps' cache records are in the results bucket, for the next container to find"
    )
