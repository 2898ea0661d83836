"""Plan mode on the gcp backend: the real client libraries against the API fake and the GCS
emulator; the fake records every request, so "nothing changed" is asserted, not assumed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from core.plan import PipelinePlan
from core.revisions import resolve_dataset_revision
from flows.finetune import finetune_pipeline
from flows.parameters import PipelineParameters
from flows.training_job import JOB_IMAGE_DIR, make_lineage, pin_revisions, train_job_spec
from tasks.backends.gcp.backend import build_gcp_backend
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud

RUN_JOB = "run.projects.locations.jobs.run"


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def world(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleCloud]:
    with fake_google_cloud(gcs_emulator, bootstrapped=False) as cloud:  # a fresh project
        # Endpoint overrides come from the environment only, never from a run's parameters.
        monkeypatch.setenv("PIPELINE_GCP__API_ENDPOINTS", json.dumps({"*": cloud.url}))
        yield cloud


def settings_for(world: FakeGoogleCloud, base_model: Path, dataset: Path) -> PipelineParameters:
    return PipelineParameters(
        backend="gcp",
        model={"base_model": str(base_model)},
        data={"dataset": str(dataset), "sample_size": 96, "eval_size": 8},
        training={"max_steps": 6, "timeout_s": 1800},
        gcp=world.gcp_values(allow_unauthenticated=True),
    )


def actions(plan: PipelinePlan) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for step in plan.steps:
        found.setdefault(step.step, set()).add(step.action)
    return found


def test_a_plan_for_a_fresh_project_changes_nothing_and_lists_everything(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    world.fake.gpu_quota[("run.googleapis.com/nvidia_l4_gpu_allocation_no_zonal_redundancy",
                          "europe-west1")] = 0  # fmt: skip
    plan = finetune_pipeline(settings_for(world, tiny_model_dir, sample_dataset_path), plan=True)

    assert isinstance(plan, PipelinePlan)
    assert world.fake.mutations() == [], [r.method_id for r in world.fake.mutations()]
    assert world.fake.calls(RUN_JOB) == []
    (quota,) = (s for s in plan.steps if s.step == "quota")
    assert quota.action == "would stop" and "region europe-west1 is 0" in quota.detail
    steps = {(s.step, s.action, s.detail.split(" (")[0]) for s in plan.steps}
    assert ("provision", "would enable", "api run.googleapis.com") in steps
    assert ("provision", "would create", f"bucket gs://{world.names.bucket}") in steps
    assert actions(plan)["build"] == {"would build"}
    assert actions(plan)["train"] == {"would train"}
    assert actions(plan)["deploy"] == {"would deploy"}
    assert plan.cost["train"] == pytest.approx(1800 * (0.0001867 + 8 * 0.000018 + 32 * 0.000002))
    assert plan.model_uri == f"gs://{world.names.bucket}/models/{plan.lineage_key}"
    assert plan.inputs["dataset"].endswith(resolve_dataset_revision(str(sample_dataset_path), None))


def test_a_plan_after_a_run_finds_the_model_and_the_serving_revision(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    parameters = settings_for(world, tiny_model_dir, sample_dataset_path)
    settings = parameters.resolve()
    # What a finished run leaves: APIs on, the bucket, the sealed model, the serving revision.
    world.fake.enable_all()
    world.storage.create_bucket(world.names.bucket)
    backend = build_gcp_backend(settings.gcp)
    image = backend.builder.image_for(JOB_IMAGE_DIR)
    lineage = make_lineage(settings, image, *pin_revisions(settings))
    spec = train_job_spec(settings, lineage)
    world.publish_model(
        tiny_model_dir, [*spec.args, "--output-dir", f"/mnt/store/{spec.output_prefix}"]
    )
    backend.server.promote(backend.server.deploy(lineage.model_prefix, "emoji-gemma", 60))
    before = len(world.fake.mutations())

    plan = finetune_pipeline(parameters, plan=True)

    assert isinstance(plan, PipelinePlan) and plan.lineage_key == lineage.key
    assert len(world.fake.mutations()) == before, "a plan must only read"
    assert actions(plan)["train"] == {"exists"}
    assert actions(plan)["deploy"] == {"exists"}
    assert actions(plan)["quota"] == {"enough"}, "the fake's project was granted quota"
    assert "train" not in plan.cost
    bucket = next(s for s in plan.steps if s.detail.startswith("bucket"))
    assert bucket.action == "exists"
