"""Operating the pipeline with Prefect: deploy, run like the UI, retrain on dataset change.

Against a real `prefect server` and a real `process` worker on 127.0.0.1. The worker's
PIPELINE_* environment points the `local` deployment at the tiny model, a copy of the sample
data and a temporary store, which is how an operator configures a worker too.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.events.worker import EventsWorker
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.variables import Variable

from core.dataset_watch import state_variable_name
from flows.watch_dataset import watch_dataset
from tests.conftest import REPO_ROOT
from tests.fakes.credentials import operator_adc
from tests.flow.prefect_server import prefect_command, running_server, running_worker

PIPELINE = "emoji-finetune/local"
RUN_DEADLINE_S = 300
WORKER_SETTINGS = {
    "PIPELINE_DATA__SAMPLE_SIZE": "96",
    "PIPELINE_DATA__EVAL_SIZE": "8",
    "PIPELINE_TRAINING__MAX_STEPS": "20",
    "PIPELINE_TRAINING__BATCH_SIZE": "8",
    "PIPELINE_TRAINING__GRAD_ACCUM": "1",
    "PIPELINE_TRAINING__LEARNING_RATE": "0.001",
    "PIPELINE_TRAINING__MAX_LENGTH": "96",
}


@dataclass(frozen=True)
class Ops:
    """What the tests act on: the server's environment, the data file, the store."""

    env: dict[str, str]
    dataset: Path
    store: Path


@pytest.fixture(scope="module")
def ops(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, sample_dataset_path: Path
) -> Iterator[Ops]:
    root = tmp_path_factory.mktemp("ops")
    dataset = root / "text2emoji.jsonl"
    dataset.write_bytes(sample_dataset_path.read_bytes())
    store = root / "store"
    # An operator's application-default credentials (user type: nothing is called with them).
    adc = operator_adc(root)
    with running_server(root / "server-home", root / "server.log") as (api_url, env):
        env = {
            **env,
            **WORKER_SETTINGS,
            "PIPELINE_MODEL__BASE_MODEL": str(tiny_model_dir),
            "PIPELINE_DATA__DATASET": str(dataset),
            "PIPELINE_LOCAL__ROOT": str(store),
            "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
            "GOOGLE_CLOUD_PROJECT": "emoji-test-project",
        }
        bootstrap = ["-m", "deployments.bootstrap", "--results-bucket", "emoji-results",
                     "--gcp-project", "emoji-test-project", "--pools-only"]  # fmt: skip
        first = run_cli(bootstrap, env)
        assert "work pool emoji-local: created" in first
        assert "work pool emoji-cloud-run: created" in first
        assert "block gcs-bucket/emoji-finetune-results: created" in first
        again = run_cli(bootstrap, env)
        assert again.count(": unchanged") == 3, again  # idempotent
        deployed = run_cli(["-m", "prefect", "--no-prompt", "deploy", "--all"], env)
        assert PIPELINE in deployed
        with (
            temporary_settings(updates={PREFECT_API_URL: api_url}),
            running_worker("emoji-local", env, REPO_ROOT, root / "worker.log"),
        ):
            yield Ops(env=env, dataset=dataset, store=store)
            # Deliver what the watcher emitted while this server still listens; otherwise a
            # later Prefect harness in the same session waits on events for a dead server.
            EventsWorker.drain_all()


def run_cli(args: list[str], env: dict[str, str]) -> str:
    completed = subprocess.run(
        [prefect_command()[0], *args],
        env={**env, "PREFECT_HOME": env["PREFECT_HOME"] + "-cli"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def pipeline_runs() -> dict[UUID, FlowRun]:
    """Every run of the `local` pipeline deployment, by id."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["emoji-finetune"])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["local"])),
        )
    return {run.id: run for run in runs}


def wait_for_new_runs(known: set[UUID], count: int, timeout_s: float = 60) -> list[FlowRun]:
    """Runs created since `known` (triggers create them asynchronously), oldest first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = [run for run_id, run in pipeline_runs().items() if run_id not in known]
        if len(new) >= count:
            return sorted(new, key=lambda run: run.created or run.expected_start_time)
        time.sleep(0.5)
    raise AssertionError(f"expected {count} new pipeline runs, found {len(new)}")


def wait_until_final(run_id: UUID) -> FlowRun:
    deadline = time.monotonic() + RUN_DEADLINE_S
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                assert run.state.is_completed(), f"{run.name}: {run.state.message}"
                return run
            time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {RUN_DEADLINE_S} s")


def model_versions(store: Path) -> set[str]:
    models = store / "models"
    return {p.name for p in models.iterdir()} if models.is_dir() else set()


def lineage_of(store: Path, key: str) -> dict[str, object]:
    return json.loads((store / "models" / key / "MANIFEST.json").read_text())["lineage"]


def change_dataset(path: Path, marker: str) -> None:
    """Append one new row, as a data team publishing a fix would."""
    row = {
        "text": f"We celebrated {marker} with cake and music.",
        "emoji": "🎂🎶",
        "topic": "feelings",
    }
    with path.open("a") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def test_run_with_custom_parameters_like_the_ui(ops: Ops) -> None:
    with get_client(sync_client=True) as client:
        cloud_pool = client.read_work_pool("emoji-cloud-run")
        assert "emoji-test-project" in json.dumps(cloud_pool.base_job_template)
        deployment = client.read_deployment_by_name(PIPELINE)
        schema = deployment.parameter_openapi_schema
        assert "settings" in schema["properties"]  # the UI renders a typed form from this
        assert "api_endpoints" not in json.dumps(schema), "test hooks are environment only"
        with pytest.raises(PrefectHTTPStatusError, match="api_endpoints"):  # 409, refused
            client.create_flow_run_from_deployment(
                deployment.id, parameters={"settings": {"gcp": {"api_endpoints": {"*": "x"}}}}
            )
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"settings": {"training": {"lora_r": 4}}}
        )
    wait_until_final(run.id)

    (key,) = model_versions(ops.store)
    assert lineage_of(ops.store, key)["training"]["lora_r"] == 4  # type: ignore[index]


def test_dataset_change_triggers_one_retraining_with_the_new_revision(ops: Ops) -> None:
    variable = state_variable_name(str(ops.dataset))
    first = watch_dataset(str(ops.dataset))
    assert first.previous is None and not first.emit  # first sight: recorded, no event
    known = set(pipeline_runs())
    versions_before = model_versions(ops.store)

    change_dataset(ops.dataset, "one change")
    changed = watch_dataset(str(ops.dataset))
    assert changed.emit and changed.previous == first.current

    (triggered,) = wait_for_new_runs(known, 1)
    finished = wait_until_final(triggered.id)
    revision = finished.parameters["settings"]["data"]["revision"]
    assert revision == changed.current
    new_versions = model_versions(ops.store) - versions_before
    assert len(new_versions) == 1
    assert lineage_of(ops.store, new_versions.pop())["dataset_revision"] == changed.current

    unchanged = watch_dataset(str(ops.dataset))
    assert not unchanged.emit and not unchanged.record
    time.sleep(3)
    assert set(pipeline_runs()) == known | {triggered.id}, "no change must start no run"
    assert Variable.get(variable) == changed.current


@pytest.mark.slow  # make test-slow (CI runs it)
def test_two_changes_close_together_queue_and_both_complete(ops: Ops) -> None:
    watch_dataset(str(ops.dataset))  # the watcher knows the dataset (a first sight emits nothing)
    known = set(pipeline_runs())
    for marker in ("first of two", "second of two"):
        change_dataset(ops.dataset, marker)
        assert watch_dataset(str(ops.dataset)).emit

    runs = wait_for_new_runs(known, 2)
    finished = sorted((wait_until_final(run.id) for run in runs), key=lambda run: run.start_time)
    assert finished[0].end_time <= finished[1].start_time, "runs must not overlap"
    revisions = {run.parameters["settings"]["data"]["revision"] for run in finished}
    assert len(revisions) == 2
