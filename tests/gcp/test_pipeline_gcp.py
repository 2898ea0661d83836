"""The unchanged flow on backend=gcp: real Google client libraries, real Prefect, offline.

Google's APIs are the local fake (tests/fakes/google_apis.py) in front of the real GCS
emulator. The "training execution" writes a real tiny model sealed with a manifest into the
bucket, so verification really reads it back from GCS; the "Cloud Run service" URL is a real
`transformers serve` of that model, so the smoke test really asks it for emoji.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import emoji
import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.logging.handlers import APILogWorker
from prefect.testing.utilities import prefect_test_harness

from core.contracts import ConfigurationError, Endpoint, SmokeTestFailed, TrainingFailed
from flows.finetune import PipelineResult, finetune_pipeline
from flows.parameters import PipelineParameters
from tasks.backends.gcp.backend import build_gcp_backend
from tasks.backends.gcp.errors import PermissionMissing, QuotaExceeded
from tasks.backends.gcp.quota import NO_ZONAL_REDUNDANCY
from tasks.backends.local.provision import LocalProvisioner
from tasks.backends.local.server import LocalModelServer
from tasks.backends.local.store import LocalFolderStore
from tests.fakes.canned_http import canned_http
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud
from tests.gcp.cloud_run_worker import service_traffic, training_progress

HF_TOKEN = "hf_gcpTestSecretValue0123456789"
CACHED_STEPS = ("build", "train", "verify")
RUN_JOB = "run.projects.locations.jobs.run"
QUOTA_GET = "serviceusage.services.consumerQuotaMetrics.get"


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="module")
def served_model(
    tuned_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoint]:
    """What the Cloud Run service would serve: the tuned tiny model, as `emoji-gemma`, for real."""
    store = LocalFolderStore(tmp_path_factory.mktemp("served"))
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    shutil.copytree(tuned_model_dir, store.path("models/tiny"))
    server = LocalModelServer(store, engine="transformers", host="127.0.0.1", port=0)
    endpoint = server.deploy("models/tiny", "emoji-gemma", 180)
    yield endpoint
    server.discard(endpoint)


@pytest.fixture
def world(
    gcs_emulator: str,
    served_model: Endpoint,
    tuned_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeGoogleCloud]:
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    with fake_google_cloud(gcs_emulator) as cloud:
        # Endpoint overrides come from the environment only, never from a run's parameters.
        monkeypatch.setenv("PIPELINE_GCP__API_ENDPOINTS", json.dumps({"*": cloud.url}))
        cloud.fake.service_url = served_model.base_url
        cloud.fake.url_for_tag = lambda tag: served_model.base_url
        cloud.fake.on_execution = lambda args: cloud.publish_model(tuned_model_dir, args)
        yield cloud


def make_settings(
    world: FakeGoogleCloud,
    base_model: Path,
    dataset: Path | str,
    gcp: dict[str, Any] | None = None,
    revision: str | None = None,
    **training: Any,
) -> PipelineParameters:
    return PipelineParameters(
        backend="gcp",
        model={"base_model": str(base_model)},
        data={"dataset": str(dataset), "revision": revision, "sample_size": 96, "eval_size": 8},
        training={"max_steps": 6, "max_length": 96, "timeout_s": 600, **training},
        serving={"startup_timeout_s": 120},
        gcp=world.gcp_values(**(gcp or {})),
    )


def states(result: PipelineResult) -> dict[str, str]:
    return {step.name: step.state for step in result.steps}


@pytest.fixture
def run_logs_at_info() -> Iterator[None]:
    """The suite logs at WARNING; this test reads the runs' INFO lines from the API."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def all_log_text() -> str:
    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        return "\n".join(log.message for log in client.read_logs())


@pytest.fixture
def no_emoji_server() -> Iterator[str]:
    """A server that answers like a badly trained model: text, no emoji."""
    answer = {"choices": [{"message": {"content": "banana soup"}}]}
    with canned_http(200, json.dumps(answer).encode(), {}) as url:
        yield url


def test_flow_on_gcp_serves_a_verified_model_and_a_rerun_changes_nothing(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    capsys: pytest.CaptureFixture[str],
    run_logs_at_info: None,
) -> None:
    settings = make_settings(world, tiny_model_dir, sample_dataset_path)
    world.fake.execution_seconds = 600  # the execution's completionTime = startTime + 600 s

    first = finetune_pipeline(settings)

    # 600 s × (1 L4 × 0.0001867 + 8 vCPU × 0.000018 + 32 GiB × 0.000002) $/s
    training_cost = "training job: 600 GPU-s + 4800 vCPU-s + 19200 GiB-s = $0.2368"
    assert first.cost[0] == training_cost
    serving_s = sum(s.seconds for s in first.steps if s.name in ("deploy", "smoke"))
    assert first.cost[1].startswith(f"serving (deploy + smoke test): {serving_s:.0f} GPU-s + ")
    assert "list prices checked 2026-12-01" in first.cost[2]
    report = Artifact.get("finetune-report")
    assert report is not None and f"- {training_cost}" in str(report.data)
    assert emoji.emoji_count(first.answer) > 0
    assert first.model_uri == f"gs://{world.names.bucket}/models/{first.lineage_key}"
    assert states(first)["train"] == "Completed"
    assert states(first)["gpu-quota"] == "Completed" and world.fake.calls(QUOTA_GET)
    assert first.kept_serving, "on gcp a model that passed smoke takes the traffic"
    assert f"models/{first.lineage_key}/MANIFEST.json" in world.objects("models/")
    assert world.objects("inputs/"), "the local base model and dataset were staged in the bucket"
    assert service_traffic(world) == [(first.endpoint.server_id, 100)]
    assert len(world.fake.calls(RUN_JOB)) == 1
    assert training_progress(first.lineage_key) == [100.0], (
        "the job's last PROGRESS line, read back from Cloud Logging, completes the bar"
    )

    before = len(world.fake.requests)
    second = finetune_pipeline(settings)

    assert second.lineage_key == first.lineage_key
    assert all(states(second)[step] == "Cached" for step in CACHED_STEPS), states(second)
    assert not any(line.startswith("training job") for line in second.cost), "trained before"
    assert [r.path for r in world.fake.requests[before:] if r.mutating] == []
    assert service_traffic(world) == [(first.endpoint.server_id, 100)]
    first_run_iam = [r.method_id for r in world.fake.requests[:before] if "IamPolicy" in r.path]
    assert first_run_iam == [
        "run.projects.locations.services.getIamPolicy",
        "run.projects.locations.services.setIamPolicy",
    ], "a run's only IAM write: the invoker on the service it created"
    logs = all_log_text()
    assert f"lineage key {first.lineage_key}" in logs, "the runs' logs reached the API"
    assert HF_TOKEN not in logs + capsys.readouterr().out + capsys.readouterr().err


def test_a_failed_candidate_never_takes_traffic(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    no_emoji_server: str,
) -> None:
    live = finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))
    serving = service_traffic(world)
    patches = len(world.fake.calls("run.projects.locations.services.patch"))

    world.fake.execution_mode = "fail"
    with pytest.raises(TrainingFailed, match=r"logs: https://console\.cloud\.google\.com"):
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path, lora_r=8))
    assert service_traffic(world) == serving, "failed training: nothing deployed"
    assert len(world.fake.calls("run.projects.locations.services.patch")) == patches

    world.fake.execution_mode = "succeed"
    world.fake.url_for_tag = lambda tag: no_emoji_server
    with pytest.raises(SmokeTestFailed, match="no emoji"):
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path, lora_r=4))
    assert service_traffic(world) == [(live.endpoint.server_id, 100)], "failed smoke: traffic stays"
    tags = [t.get("tag") for t in world.fake.resource(world.names.service)["traffic"]]
    assert tags == [f"m-{live.lineage_key[:12]}"], "the discarded candidate lost its tag"


def test_transient_errors_are_retried_and_quota_errors_are_not(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    world.fake.inject(RUN_JOB, 503, "The service is currently unavailable.")
    finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))
    assert len(world.fake.calls(RUN_JOB)) == 2, "one 503, then the retry started the execution"

    world.fake.inject(
        RUN_JOB,
        429,
        "Quota exceeded for quota metric 'Total Nvidia L4 GPU allocation, per project per region'",
        times=5,
    )
    with pytest.raises(QuotaExceeded) as raised:
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path, lora_r=8))
    message = str(raised.value)
    assert world.project in message and "europe-west1" in message and "quotas" in message
    assert len(world.fake.calls(RUN_JOB)) == 3, "a quota error is not retried"


def test_a_region_without_gpu_quota_stops_the_run_before_anything_is_built(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    world.fake.gpu_quota[(NO_ZONAL_REDUNDANCY.metric, "europe-west1")] = 0

    with pytest.raises(ConfigurationError) as raised:
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))

    message = str(raised.value)
    assert NO_ZONAL_REDUNDANCY.quota_id in message and "region europe-west1 is 0" in message
    assert f"https://console.cloud.google.com/iam-admin/quotas?project={world.project}" in message
    assert world.fake.mutations() == [], "no build, no job, no service"
    assert world.objects("builds/") == [] and world.objects("inputs/") == [], "no upload"


def test_an_unreadable_gpu_quota_is_one_warning_and_the_run_goes_on(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world.fake.inject(
        QUOTA_GET, 403, "Permission 'serviceusage.quotas.get' denied", "PERMISSION_DENIED"
    )

    result = finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))

    assert states(result)["gpu-quota"] == "Completed"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if "could not be read" in w and "permission denied" in w]
    assert len(world.fake.calls(RUN_JOB)) == 1 and service_traffic(world)


# --------------------------------------------------------------------------- Google's faults

BUILD = "cloudbuild.projects.builds.create"
SERVICE_PATCH = "run.projects.locations.services.patch"
MUTATED_APIS = {"cloudbuild.v1", "run.v2", "storage"}  # a run's; bootstrap did the others


def creates(world: FakeGoogleCloud, method_id: str) -> int:
    return len(world.fake.calls(method_id))


@pytest.mark.parametrize(
    ("code", "message"),
    [(503, "The service is currently unavailable."), (429, "Rate exceeded.")],
)
def test_one_transient_error_on_the_first_mutation_of_every_api_is_absorbed(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    code: int,
    message: str,
) -> None:
    world.fake.fail_first_mutation_of_each_api(code, message)

    result = finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))

    assert world.fake._apis_failed == MUTATED_APIS, "every API answered one error"
    assert states(result)["provision"] == "Completed"
    # two images (dependencies, then code); the refused first create is tried once more
    assert len(world.fake.state.builds) == 2 and creates(world, BUILD) == 3
    assert len(world.executions()) == 1 and creates(world, RUN_JOB) == 1
    assert creates(world, "run.projects.locations.jobs.create") == 2
    assert service_traffic(world) == [(result.endpoint.server_id, 100)]


def test_a_start_whose_answer_is_lost_is_found_and_adopted_not_repeated(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    world.fake.listing_lag = 2  # the new build / execution is missing from two listings
    world.fake.work_polls = 3  # and still running when the client tries again
    world.fake.inject(BUILD, 503, "The service is currently unavailable.", after=True)
    world.fake.inject(RUN_JOB, 503, "reset", after=True, reset=True)

    result = finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))

    # the dependencies build's lost answer is adopted; then the code build: one build each
    assert creates(world, BUILD) == 2 and len(world.fake.state.builds) == 2, "no second build"
    assert creates(world, RUN_JOB) == 1 and len(world.executions()) == 1, "no second execution"
    assert result.model_uri.endswith(result.lineage_key)
    assert service_traffic(world) == [(result.endpoint.server_id, 100)]


def test_a_lost_create_race_is_adopted_and_a_stale_etag_is_redone(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    created_meanwhile = (
        "run.projects.locations.jobs.create",
        "run.projects.locations.services.create",
    )
    for method in created_meanwhile:  # another run creates it between our get and our create
        world.fake.inject(method, 409, "Resource already exists", "ALREADY_EXISTS", after=True)
    world.fake.change_concurrently("run.projects.locations.services.setIamPolicy")

    first = finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))

    assert all(creates(world, method) == 1 for method in created_meanwhile)
    assert creates(world, "run.projects.locations.services.setIamPolicy") == 2
    assert service_traffic(world) == [(first.endpoint.server_id, 100)]

    patches = creates(world, SERVICE_PATCH)
    world.fake.change_concurrently("run.projects.locations.jobs.patch")
    world.fake.change_concurrently(SERVICE_PATCH, times=2)  # the candidate, then the promotion
    settings = make_settings(
        world, tiny_model_dir, sample_dataset_path, gcp={"max_retries": 2}, lora_r=8
    )
    second = finetune_pipeline(settings)

    assert creates(world, "run.projects.locations.jobs.patch") == 2, "redone on a fresh read"
    assert world.fake.resource(world.names.job)["template"]["template"]["maxRetries"] == 2
    assert creates(world, SERVICE_PATCH) == patches + 4
    assert service_traffic(world) == [(second.endpoint.server_id, 100)]
    assert len(world.executions()) == 2


def test_a_disabled_api_fails_a_run_at_once(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    """Runs enable nothing (bootstrap does, and waits for propagation: the contract tests),
    so a 403 SERVICE_DISABLED in a run is never retried."""
    world.fake.inject_service_disabled(RUN_JOB, "run.googleapis.com")
    with pytest.raises(PermissionMissing, match="enable the API"):
        finetune_pipeline(make_settings(world, tiny_model_dir, sample_dataset_path))
    assert creates(world, RUN_JOB) == 1, "a 403 for an API this run did not enable: no retry"
    assert world.executions() == [] and world.fake.calls("serviceusage.services.batchEnable") == []


def test_a_first_deploy_that_fails_its_smoke_test_leaves_nothing_reachable(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    sample_dataset_path: Path,
    no_emoji_server: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world.fake.url_for_tag = lambda tag: no_emoji_server
    settings = make_settings(
        world, tiny_model_dir, sample_dataset_path, gcp={"allow_unauthenticated": True}
    )

    with pytest.raises(SmokeTestFailed, match="no emoji"):
        finetune_pipeline(settings)

    assert world.names.service not in world.fake.state.resources, "the failed service is gone"
    assert creates(world, "run.projects.locations.services.delete") == 1
    created = world.fake.calls("run.projects.locations.services.create")[0].body
    assert not created.get("invokerIamDisabled"), "never public before its smoke test passed"
    assert "deleted service" in caplog.text, "the run log says what is left"


def test_service_settings_apply_on_the_next_run_even_for_the_same_model(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    settings = make_settings(world, tiny_model_dir, sample_dataset_path)
    first = finetune_pipeline(settings)
    assert not world.fake.resource(world.names.service).get("invokerIamDisabled")

    before = len(world.fake.requests)
    public = make_settings(
        world, tiny_model_dir, sample_dataset_path, gcp={"allow_unauthenticated": True}
    )
    second = finetune_pipeline(public)

    assert second.endpoint.server_id == first.endpoint.server_id, "same model, same revision"
    assert world.fake.resource(world.names.service)["invokerIamDisabled"] is True
    patches = [r for r in world.fake.requests[before:] if r.method_id == SERVICE_PATCH]
    assert len(patches) == 1 and creates(world, RUN_JOB) == 1
    assert service_traffic(world) == [(first.endpoint.server_id, 100)]

    finetune_pipeline(settings)
    assert not world.fake.resource(world.names.service).get("invokerIamDisabled")


def test_a_run_on_an_older_generation_never_replaces_a_newer_one(
    harness: None,
    world: FakeGoogleCloud,
    tiny_model_dir: Path,
    tuned_model_dir: Path,
    sample_dataset_path: Path,
) -> None:
    """Two close uploads start two runs that may end in either order: the late run on the
    older generation trains and is smoke-tested, but traffic stays on the newer one."""
    blob = world.storage.bucket(world.names.bucket).blob("data/text2emoji.jsonl")
    blob.upload_from_string(sample_dataset_path.read_bytes())
    uri, older = f"gs://{world.names.bucket}/data/text2emoji.jsonl", str(blob.generation)
    # What the run on the next upload left: its model, serving (the emulator keeps only the
    # live generation, so the newer one is recorded in a lineage rather than uploaded).
    newer, newer_key = str(int(older) + 1), "ffff0000ffff0000"
    lineage = {"dataset": uri, "dataset_revision": newer, "training": {}}
    args = ["--output-dir", f"/mnt/store/models/{newer_key}", "--lineage-key", newer_key,
            "--lineage-json", json.dumps(lineage)]  # fmt: skip
    world.publish_model(tuned_model_dir, args)
    server = build_gcp_backend(make_settings(world, tiny_model_dir, uri).resolve().gcp).server
    server.promote(server.deploy(f"models/{newer_key}", "emoji-gemma", 60))
    serving = service_traffic(world)

    late = finetune_pipeline(make_settings(world, tiny_model_dir, uri, revision=older))

    assert not late.kept_serving
    assert late.serving_note.startswith(f"not promoted: {newer_key} serves generation {newer}")
    assert service_traffic(world) == serving
