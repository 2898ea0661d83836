"""The orchestrator on Cloud Run: `make deploy-gcp`, the job the worker submits, no torch.

Against a real Prefect server (the test harness) and the offline Google world: the deploy
module builds the orchestrator image through the pipeline's builder (Cloud Build fake, GCS
emulator), registers the pool and `prefect deploy`s prefect.yaml's `cloud-run` entry. The
cloud-run-v2 worker's own configuration class then renders the job body for a run of that
deployment, exactly as the worker does, and the worker's own `JobV2.create` submits it to the
fake's Cloud Run v2 API, which validates it against Google's discovery document. Last, a whole
gcp run in an interpreter where no training library can be imported, as in the image.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from core.contracts import ConfigurationError
from deployments.bootstrap import CLOUD_RUN_POOL, bootstrap, ensure_results_block
from deployments.cloud_run_pool import template_image
from deployments.deploy_gcp import deploy_gcp, main
from flows.settings import env_variable
from tests.conftest import REPO_ROOT
from tests.fakes.canned_http import canned_http
from tests.fakes.credentials import operator_adc
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud
from tests.gcp.cloud_run_worker import (
    DEPLOYMENT,
    submit_like_the_worker,
    submitted_container,
    worker_configuration,
)

RESULTS = ("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK", "gcs-bucket/emoji-finetune-results")
POOL = f"work pool {CLOUD_RUN_POOL}"


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def world(
    gcs_emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGoogleCloud]:
    # prefect-gcp's credentials block reads application-default credentials when created:
    # an operator's (user type; nothing is called with them).
    adc = operator_adc(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "operator-default-project")
    with fake_google_cloud(gcs_emulator) as cloud:
        yield cloud


def registry_image(world: FakeGoogleCloud) -> str:
    """The orchestrator image as the fake registry holds it: `…/orchestrator@sha256:…`."""
    (tag,) = [
        resource
        for name, resource in world.fake.state.resources.items()
        if "/packages/orchestrator/tags/" in name
    ]
    digest = tag["version"].rsplit("/", 1)[1]
    return (
        f"{world.names.region}-docker.pkg.dev/{world.project}/emoji-finetune/orchestrator@{digest}"
    )


def built_source(world: FakeGoogleCloud) -> set[str]:
    """The file names in the source tarball the one build read."""
    (build,) = world.fake.state.builds.values()
    name = build["source"]["storageSource"]["object"]
    blob = world.storage.bucket(world.names.bucket).blob(name).download_as_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as archive:
        return set(archive.getnames())


def test_deploy_without_a_project_names_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "error: gcp.project is not set: set PIPELINE_GCP__PROJECT or --gcp-project\n"
    )


def test_deploy_builds_once_and_the_worker_submits_the_digest_runner_and_results(
    harness: None, world: FakeGoogleCloud
) -> None:
    gcp = world.settings()
    with pytest.raises(ConfigurationError, match="emoji-finetune-results is missing: run"):
        deploy_gcp(gcp)
    assert world.fake.requests == [], "a missing results block stops it before any build"

    ensure_results_block(world.names.bucket)
    first = deploy_gcp(gcp)
    image = registry_image(world)
    assert first == {
        f"orchestrator image {image}": "built",
        POOL: "created",
        f"deployment {DEPLOYMENT}": "deployed",
    }
    source = built_source(world)
    assert {"Dockerfile", "job_image/Dockerfile", "flows/finetune.py", "prefect.yaml"} <= source
    assert not any(name.startswith(("tests/", ".venv/", ".pipeline/")) for name in source)

    world.fake.requests.clear()
    again = deploy_gcp(gcp)
    assert again == first | {f"orchestrator image {image}": "present", POOL: "unchanged"}
    assert world.fake.mutations() == [], "unchanged code: no upload, no build"
    assert len(world.fake.state.builds) == 1

    config = asyncio.run(worker_configuration())
    response = submit_like_the_worker(world, config)
    location = f"projects/{world.project}/locations/{world.names.region}"
    assert response["name"].startswith(f"{location}/operations/"), response  # an LRO, accepted
    task = world.fake.resource(f"{location}/jobs/{config.job_name}")["template"]["template"]
    container = submitted_container(world, config)
    env = {item["name"]: item["value"] for item in container["env"]}
    assert container["image"] == image
    assert task["serviceAccount"] == world.names.account_email("runner")
    assert RESULTS in env.items()
    assert env["PIPELINE_BACKEND"] == "gcp"
    assert env["PIPELINE_GCP__PROJECT"] == world.project
    assert "PIPELINE_GCP__API_ENDPOINTS" not in env, "test hooks never reach Cloud Run"
    assert container["command"][:3] == ["prefect", "flow-run", "execute"]

    bootstrap(world.project, pools_only=True)  # an operator re-registering the pools
    with get_client(sync_client=True) as client:
        template = client.read_work_pool(CLOUD_RUN_POOL).base_job_template
    assert template_image(template) == image, "only deploy_gcp changes the image"


# Runs the pipeline's command line where torch, transformers & co. are not importable (the
# standard path finder is replaced by one that cannot find them), as in the orchestrator image.
WITHOUT_TRAINING_LIBRARIES = """
import sys
from importlib.machinery import PathFinder

TRAINING = {"torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes",
            "tokenizers"}

class WithoutTraining(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in TRAINING:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [WithoutTraining if f is PathFinder else f for f in sys.meta_path]
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_gcp_run_needs_no_training_library(
    harness: None, world: FakeGoogleCloud, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    world.fake.on_execution = lambda args: world.publish_model(tiny_model_dir, args)
    fast = {env_variable(f"gcp.{name}"): str(value) for name, value in world.gcp_values().items()}
    run_settings = {
        "PIPELINE_GCP__API_ENDPOINTS": json.dumps({"*": world.url}),
        "PIPELINE_DATA__SAMPLE_SIZE": "96",
        "PIPELINE_DATA__EVAL_SIZE": "8",
        "PIPELINE_TRAINING__MAX_STEPS": "6",
    }
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    answer = json.dumps({"choices": [{"message": {"content": "🎉🍰"}}]}).encode()
    with canned_http(200, answer, {}) as served:  # the smoke test's peer; no model loads
        world.fake.service_url = served
        world.fake.url_for_tag = lambda tag: served
        run = subprocess.run(
            [sys.executable, "-c", WITHOUT_TRAINING_LIBRARIES, "--backend", "gcp",
             "--base-model", str(tiny_model_dir), "--dataset", str(sample_dataset_path)],
            env={**os.environ, **fast, **run_settings,
                 "PREFECT_API_URL": str(PREFECT_API_URL.value()),
                 "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(world.executions()) == 1, "the run trained (the fake job published a model)"
    manifests = [name for name in world.objects("models/") if name.endswith("/MANIFEST.json")]
    assert len(manifests) == 1
    service = world.fake.resource(world.names.service)
    assert [int(t.get("percent", 0)) for t in service["traffic"]] == [100], "verified, served"
