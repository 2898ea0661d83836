"""What the gcp backend sends Google, read from the fake's request log.

The fake validates every body against Google's discovery documents, so these tests only pin
the choices that matter: GPU fields, the bucket volume, the secret reference, deliberate
retries, vLLM's arguments, the startup probe, traffic and tags, the invoker check, which
account each part runs as, and every IAM binding bootstrap writes (member, role, resource).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.contracts import (
    Backend,
    ConfigurationError,
    DeadlineExceeded,
    DeployFailed,
    Endpoint,
    Progress,
    TrainJobSpec,
)
from core.lineage import model_prefix
from deployments.bootstrap import ensure_gcp
from tasks.backends.gcp.backend import build_gcp_backend, build_gcp_bootstrap
from tasks.backends.gcp.config import ACCOUNT_ROLES, AccountRole, GcpSettings
from tasks.backends.gcp.errors import QuotaExceeded
from tasks.backends.gcp.grants import bootstrap_grants
from tasks.backends.gcp.image import source_tarball
from tasks.backends.gcp.specs import candidate_tag
from tests.conftest import REPO_ROOT
from tests.fakes.gcp_world import FakeGoogleCloud, fake_google_cloud
from tests.fakes.google_apis import REVISION_FAILURE

TOKEN = "hf_contractSecret42"
JOB_IMAGE = REPO_ROOT / "job_image"
KEY = "0123456789abcdef"
BY_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


@pytest.fixture
def world(
    gcs_emulator: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGoogleCloud]:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with fake_google_cloud(gcs_emulator, bootstrapped=False) as cloud:
        cloud.fake.on_execution = lambda args: cloud.publish_model(tiny_model_dir, args)
        yield cloud


def backend_for(world: FakeGoogleCloud, **settings: Any) -> Backend:
    """The admin's bootstrap, then a run's backend past its (read-only) provision check."""
    world.bootstrap(**settings)
    backend = build_gcp_backend(world.settings(**settings))
    backend.provisioner.ensure(on_log=lambda _: None)
    return backend


def job_spec(key: str, dataset: Path, deadline_s: float = 600) -> TrainJobSpec:
    lineage = json.dumps({"dataset": str(dataset)})
    args = ("--dataset", str(dataset), "--lineage-key", key, "--lineage-json", lineage)
    return TrainJobSpec(key, model_prefix(key), args, deadline_s)


def body(world: FakeGoogleCloud, method_id: str, index: int = -1) -> dict[str, Any]:
    calls = world.fake.calls(method_id)
    assert calls, f"no {method_id} request"
    return calls[index].body  # type: ignore[no-any-return]


def quiet(_: object) -> None:
    """A log/progress callback for calls whose output the test does not read."""


def test_training_job_asks_for_one_l4_the_bucket_the_secret_and_no_silent_retries(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    backend = backend_for(world)
    image = backend.builder.build(JOB_IMAGE, on_log=quiet)
    outcome = backend.runner.run(image, job_spec(KEY, sample_dataset_path), quiet, quiet)

    task = body(world, "run.projects.locations.jobs.create")["template"]["template"]
    (container,) = task["containers"]
    assert container["image"] == image.uri and "@sha256:" in image.uri
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert task["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert task["gpuZonalRedundancyDisabled"] is True
    assert task["maxRetries"] == 1, "set deliberately: Cloud Run's default would be 3"
    assert task["timeout"] == "3600s"
    assert task["serviceAccount"] == world.names.trainer_email, "the job runs as the trainer"
    assert task["executionEnvironment"] in ("EXECUTION_ENVIRONMENT_GEN2", 2)
    assert container["env"] == [
        {
            "name": "HF_TOKEN",
            "valueSource": {"secretKeyRef": {"secret": "hf-token", "version": "latest"}},
        }
    ]
    assert container["volumeMounts"] == [{"name": "store", "mountPath": "/mnt/store"}]
    assert task["volumes"][0]["gcs"]["bucket"] == world.names.bucket
    assert not task["volumes"][0]["gcs"].get("readOnly")

    run = body(world, "run.projects.locations.jobs.run")["overrides"]
    args = run["containerOverrides"][0]["args"]
    assert args[args.index("--output-dir") + 1] == f"/mnt/store/models/{KEY}"
    staged = args[args.index("--dataset") + 1]
    assert staged.startswith("/mnt/store/inputs/") and staged.endswith(sample_dataset_path.name)
    assert run["timeout"] == "600s" and run["taskCount"] == 1
    assert outcome.output_uri == f"gs://{world.names.bucket}/models/{KEY}"

    before = len(world.fake.requests)
    again = backend.runner.run(image, job_spec(KEY, sample_dataset_path), quiet, quiet)
    assert again.reused and not [r for r in world.fake.requests[before:] if r.mutating]


def test_a_running_execution_for_the_same_model_is_joined_not_duplicated(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    backend = backend_for(world)
    image = backend.builder.build(JOB_IMAGE, on_log=quiet)
    world.fake.execution_mode = "hold"
    runner = backend.runner
    runner.ensure_job(image, quiet)  # type: ignore[attr-defined]
    spec = job_spec(KEY, sample_dataset_path, deadline_s=30)
    args = [*spec.args, "--output-dir", f"/mnt/store/{spec.output_prefix}"]
    execution = runner.start(args, 600, quiet)  # type: ignore[attr-defined]
    logs: list[str] = []

    def finish_while_waiting(_: object) -> None:  # the other run's execution completes
        world.fake.finish_execution(execution, succeeded=True)

    outcome = runner.run(image, spec, logs.append, finish_while_waiting)

    assert outcome.execution == execution
    assert len(world.fake.calls("run.projects.locations.jobs.run")) == 1
    assert any("already training" in line for line in logs)


def test_past_the_deadline_the_execution_is_cancelled(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    backend = backend_for(world)
    image = backend.builder.build(JOB_IMAGE, on_log=quiet)
    world.fake.execution_mode = "hold"
    with pytest.raises(DeadlineExceeded, match="was cancelled"):
        backend.runner.run(image, job_spec(KEY, sample_dataset_path, deadline_s=0.3), quiet, quiet)
    assert len(world.fake.calls("run.projects.locations.jobs.executions.cancel")) == 1


def test_service_runs_vllm_privately_and_moves_traffic_only_on_promote(
    world: FakeGoogleCloud,
) -> None:
    server = backend_for(world).server
    first = server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)

    service = body(world, "run.projects.locations.services.create")
    template = service["template"]
    (container,) = template["containers"]
    assert container["image"] == GcpSettings.model_fields["vllm_image"].default
    assert container["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    args = container["args"]
    model_uri = f"gs://{world.names.bucket}/models/aaaaaaaaaaaaaaaa"
    assert args[args.index("--model") + 1] == model_uri, "streamed from GCS, not a FUSE mount"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    assert "volumes" not in template and "volumeMounts" not in container
    assert args[args.index("--served-model-name") + 1] == "emoji-gemma"
    assert container["ports"] == [{"containerPort": 8000}]
    probe = container["startupProbe"]
    assert probe["httpGet"] == {"path": "/health", "port": 8000}
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 300, "sized for model loading"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert not container["resources"].get("cpuIdle"), "a GPU service keeps its CPU"
    assert template["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert template["gpuZonalRedundancyDisabled"] is True
    assert template["scaling"]["maxInstanceCount"] == 1
    assert "minInstanceCount" not in template["scaling"], "scales to zero by default"
    assert not service.get("invokerIamDisabled"), "the invoker IAM check stays on"
    assert template["serviceAccount"] == world.names.server_email, "vLLM runs as the server"
    (grant,) = world.fake.calls("run.projects.locations.services.setIamPolicy")
    assert grant.path.endswith(f"{world.names.service}:setIamPolicy"), "on that service only"
    assert grant.body["policy"]["bindings"] == [
        {"role": "roles/run.invoker", "members": [f"serviceAccount:{world.names.invoker_email}"]}
    ]

    second = server.deploy("models/bbbbbbbbbbbbbbbb", "emoji-gemma", 300)
    traffic = body(world, "run.projects.locations.services.patch")["traffic"]
    assert [(t["revision"], t.get("percent", 0), t.get("tag")) for t in traffic] == [
        (first.server_id, 100, candidate_tag("aaaaaaaaaaaaaaaa")),
        (second.server_id, 0, candidate_tag("bbbbbbbbbbbbbbbb")),
    ], "the candidate gets a tag and no traffic"
    assert all(t["type"] in (BY_REVISION, 2) for t in traffic)

    server.promote(second)
    traffic = body(world, "run.projects.locations.services.patch")["traffic"]
    assert [(t["revision"], t["percent"]) for t in traffic] == [(second.server_id, 100)]

    before = len(world.fake.requests)
    assert server.deploy("models/bbbbbbbbbbbbbbbb", "emoji-gemma", 300) == second
    server.promote(second)
    assert not [r for r in world.fake.requests[before:] if r.mutating], "a rerun changes nothing"


def test_a_discarded_candidate_leaves_traffic_where_it_was(world: FakeGoogleCloud) -> None:
    server = backend_for(world).server
    live = server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)
    server.promote(live)
    candidate = server.deploy("models/cccccccccccccccc", "emoji-gemma", 300)
    assert live.server_id in server.discard(candidate)
    traffic = world.fake.resource(world.names.service)["traffic"]
    assert [(t["revision"], t["percent"]) for t in traffic] == [(live.server_id, 100)]


def test_a_revision_that_fails_to_start_is_reported_and_never_serves(
    world: FakeGoogleCloud,
) -> None:
    server = backend_for(world).server
    live = server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)
    server.promote(live)
    world.fake.revisions_fail = True
    with pytest.raises(DeployFailed, match=r"failed to start|not ready"):
        server.deploy("models/dddddddddddddddd", "emoji-gemma", 300)
    traffic = world.fake.resource(world.names.service)["traffic"]
    assert [(t["revision"], t["percent"]) for t in traffic] == [(live.server_id, 100)]


def test_public_endpoint_only_when_explicitly_allowed_and_only_once_promoted(
    world: FakeGoogleCloud,
) -> None:
    server = backend_for(world, allow_unauthenticated=True).server
    endpoint: Endpoint = server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)
    assert not body(world, "run.projects.locations.services.create").get("invokerIamDisabled")
    assert server.request_headers(endpoint)["Authorization"].startswith("Bearer ")

    server.promote(endpoint)

    assert body(world, "run.projects.locations.services.patch")["invokerIamDisabled"] is True
    assert world.fake.resource(world.names.service)["labels"]["promoted"] == "true"


def build_requests(world: FakeGoogleCloud, since: int = 0) -> list[dict[str, Any]]:
    return [call.body for call in world.fake.calls("cloudbuild.projects.builds.create")[since:]]


def docker_args(request: dict[str, Any]) -> list[str]:
    (step,) = request["steps"]
    return step["args"]  # type: ignore[no-any-return]


def source_names(world: FakeGoogleCloud, request: dict[str, Any]) -> list[str]:
    """The file names inside a build's uploaded source tarball."""
    name = request["source"]["storageSource"]["object"]
    data = world.storage.bucket(world.names.bucket).blob(name).download_as_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return archive.getnames()


def test_min_instances_warms_the_promoted_revision_only_and_survives_later_deploys(
    world: FakeGoogleCloud,
) -> None:
    cold = backend_for(world).server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)
    server = build_gcp_backend(world.settings(min_instances=1)).server
    first = server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)
    assert first.server_id == cold.server_id, "a service-level setting: same revision"
    assert not world.fake.resource(world.names.service).get("scaling"), "none warm before smoke"

    server.promote(first)

    assert body(world, "run.projects.locations.services.patch")["scaling"] == {
        "minInstanceCount": 1
    }
    second = server.deploy("models/bbbbbbbbbbbbbbbb", "emoji-gemma", 300)
    candidate = body(world, "run.projects.locations.services.patch")
    assert candidate["scaling"] == {"minInstanceCount": 1}, "a candidate's deploy keeps it"
    assert "minInstanceCount" not in candidate["template"]["scaling"], "no per-revision minimum"
    server.promote(second)
    patches = len(world.fake.calls("run.projects.locations.services.patch"))
    server.promote(second)
    assert len(world.fake.calls("run.projects.locations.services.patch")) == patches

    assert "billing around the clock" in server.how_to_stop(second)
    build_gcp_backend(world.settings()).server.promote(second)  # back to 0: scale to zero
    assert (
        not body(world, "run.projects.locations.services.patch")
        .get("scaling", {})
        .get("minInstanceCount")
    )


def test_image_is_built_once_per_content_and_pinned_by_digest(world: FakeGoogleCloud) -> None:
    builder = backend_for(world).builder
    assert source_tarball(JOB_IMAGE) == source_tarball(JOB_IMAGE), "deterministic bytes"
    wanted = builder.image_for(JOB_IMAGE)
    assert builder.find(wanted) is None

    built = builder.build(JOB_IMAGE, on_log=quiet)

    assert built.content_hash == wanted.content_hash and "@sha256:" in built.uri
    deps, code = build_requests(world)
    for request in (deps, code):
        source = request["source"]["storageSource"]
        assert source["bucket"] == world.names.bucket and source["object"].endswith(".tar.gz")
        assert request["serviceAccount"] == world.names.account_name("builder")
        assert request["options"]["logging"] in ("CLOUD_LOGGING_ONLY", 5), (
            "a named account needs it"
        )
    assert docker_args(deps)[:3] == ["build", "-f", "deps.Dockerfile"]
    assert sorted(source_names(world, deps)) == ["deps.Dockerfile", "requirements.txt"]
    (deps_uri,) = deps["images"]
    assert deps_uri.startswith(f"{world.names.image_repository}:deps-")
    deps_digest = world.fake.tag_digest(deps_uri)
    assert f"DEPS_IMAGE={world.names.image_repository}@{deps_digest}" in docker_args(code)
    assert code["images"] == [
        f"{wanted.uri}-{deps_digest.removeprefix('sha256:')[:12]}",
        wanted.uri,
    ]
    assert built.uri == f"{world.names.image_repository}@{world.fake.tag_digest(wanted.uri)}"
    assert builder.find(wanted) == built
    again = builder.build(JOB_IMAGE, on_log=quiet)
    assert again.uri == built.uri
    assert len(build_requests(world)) == 2, "nothing changed: no build"


def test_a_code_change_rebuilds_only_the_code_image(world: FakeGoogleCloud, tmp_path: Path) -> None:
    builder = backend_for(world).builder
    context = tmp_path / "job_image"
    shutil.copytree(JOB_IMAGE, context)
    first = builder.build(context, on_log=quiet)
    deps_uri = build_requests(world)[0]["images"][0]
    deps_digest = world.fake.tag_digest(deps_uri)

    (context / "finetune.py").write_text((context / "finetune.py").read_text() + "\n# edit\n")
    second = builder.build(context, on_log=quiet)

    (code,) = build_requests(world, since=2)
    assert docker_args(code)[:2] == ["build", "--build-arg"], "a code build, not a deps one"
    assert f"DEPS_IMAGE={world.names.image_repository}@{deps_digest}" in docker_args(code)
    assert second.uri != first.uri and second.content_hash != first.content_hash
    assert world.fake.tag_digest(deps_uri) == deps_digest, "the dependencies image is untouched"

    (context / "requirements.txt").write_text(
        (context / "requirements.txt").read_text() + "# edit\n"
    )
    builder.build(context, on_log=quiet)

    deps_again, code_again = build_requests(world, since=3)
    assert deps_again["images"] != [deps_uri]
    new_digest = world.fake.tag_digest(deps_again["images"][0])
    assert f"DEPS_IMAGE={world.names.image_repository}@{new_digest}" in docker_args(code_again)


def test_a_context_without_a_deps_dockerfile_is_one_image(
    world: FakeGoogleCloud, tmp_path: Path
) -> None:
    builder = backend_for(world).builder
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim-bookworm\n")
    wanted = builder.image_for(tmp_path)

    built = builder.build(tmp_path, on_log=quiet)

    (request,) = build_requests(world)
    assert request["images"] == [wanted.uri]
    assert docker_args(request) == ["build", "-t", wanted.uri, "."]
    assert builder.find(wanted) == built


def test_secret_gets_a_version_only_when_the_token_changes_and_never_leaks(
    world: FakeGoogleCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrapper = build_gcp_bootstrap(world.settings())
    logs: list[str] = []
    bootstrapper.ensure(on_log=logs.append)
    bootstrapper.ensure(on_log=logs.append)
    assert len(world.fake.calls("secretmanager.projects.secrets.addVersion")) == 1

    monkeypatch.setenv("HF_TOKEN", "hf_rotatedSecret77")
    bootstrapper.ensure(on_log=logs.append)
    assert len(world.fake.calls("secretmanager.projects.secrets.addVersion")) == 2
    assert not any(TOKEN in line or "hf_rotatedSecret77" in line for line in logs)

    monkeypatch.delenv("HF_TOKEN")
    bootstrapper.ensure(on_log=logs.append)  # an existing version is enough later
    provisioner = build_gcp_backend(world.settings()).provisioner
    before = len(world.fake.requests)
    provisioner.ensure(on_log=logs.append)  # a run never reads the value, nor needs $HF_TOKEN
    accessed = [r for r in world.fake.requests[before:] if r.method_id.endswith(".access")]
    assert accessed == [] and provisioner.is_ready()


def test_without_a_token_nothing_is_created(
    world: FakeGoogleCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ConfigurationError, match="HF_TOKEN is not set"):
        build_gcp_bootstrap(world.settings()).ensure(on_log=quiet)
    assert world.fake.mutations() == []


def test_bindings_keep_other_members_and_survive_a_concurrent_change(
    world: FakeGoogleCloud,
) -> None:
    bootstrapper = build_gcp_bootstrap(world.settings())
    bootstrapper.ensure(on_log=quiet)
    secret = world.names.secret
    other = {"role": "roles/secretmanager.secretAccessor", "members": ["user:ops@example.com"]}
    world.fake.state.policies[secret] = {"version": 1, "etag": "QndPbGQ=", "bindings": [other]}
    world.fake.inject("secretmanager.projects.secrets.setIamPolicy", 409, "concurrent", "ABORTED")
    accessor = next(g for g in bootstrap_grants(world.names) if g.role == other["role"])

    assert bootstrapper.ensure_grant(accessor, quiet)

    members = world.fake.state.policies[secret]["bindings"][0]["members"]
    assert members == ["user:ops@example.com", f"serviceAccount:{world.names.trainer_email}"]
    sets = world.fake.calls("secretmanager.projects.secrets.setIamPolicy")
    assert sets[-1].body["policy"]["etag"] == "QndPbGQ=" and len(sets) == 4  # 2 grants, then 2


def test_bucket_is_regional_uniform_and_not_public(world: FakeGoogleCloud) -> None:
    backend = backend_for(world)
    bucket = backend.provisioner.clients.storage.get_bucket(world.names.bucket)  # type: ignore[attr-defined]
    assert bucket.location == "EUROPE-WEST1"
    assert bucket.iam_configuration.uniform_bucket_level_access_enabled
    assert bucket.iam_configuration.public_access_prevention == "enforced"


def test_the_fake_rejects_what_google_rejects(world: FakeGoogleCloud) -> None:
    world.fake.enable_all()
    url = f"{world.url}/v2/{world.names.location}/jobs?jobId=x"
    unknown = httpx.post(url, json={"template": {"template": {"gpus": 1, "containers": []}}})
    assert unknown.status_code == 400
    assert 'Unknown name "gpus"' in unknown.json()["error"]["message"]
    enum = {"template": {"template": {"executionEnvironment": "GEN9", "containers": []}}}
    assert httpx.post(url, json=enum).status_code == 400
    assert httpx.get(f"{world.url}/v2/{world.names.job}").status_code == 404


def test_teardown_deletes_the_service_and_on_request_job_images_and_models(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    backend = backend_for(world)
    image = backend.builder.build(JOB_IMAGE, on_log=quiet)
    backend.runner.run(image, job_spec(KEY, sample_dataset_path), quiet, quiet)
    backend.server.deploy(model_prefix(KEY), "emoji-gemma", 300)
    teardown = backend.teardown
    assert teardown is not None

    assert teardown.stop_serving(quiet) and not teardown.stop_serving(quiet)
    assert teardown.delete_job(quiet) and not teardown.delete_job(quiet)
    assert teardown.delete_images(quiet) == 2, "the code image and its dependencies image"
    assert teardown.delete_models(quiet) == 1
    assert world.objects("models/") == []
    assert backend.builder.find(backend.builder.image_for(JOB_IMAGE)) is None
    assert world.objects("inputs/"), "provisioned and staged things stay"


def test_the_wait_covers_every_attempt_cloud_run_makes(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    backend = backend_for(world, max_retries=2)
    image = backend.builder.build(JOB_IMAGE, on_log=quiet)
    world.fake.execution_mode = "hold"
    world.fake.logs.job_lines = ()  # no PROGRESS lines: progress is the elapsed share of the wait
    spec = job_spec(KEY, sample_dataset_path, deadline_s=0.4)
    seen: list[float] = []

    def first_attempt_outlived(progress: Progress) -> None:  # a retried task is still running
        seen.append(progress.total)
        if progress.done > spec.deadline_s:
            (execution,) = world.executions()
            world.fake.finish_execution(execution, succeeded=True)

    outcome = backend.runner.run(image, spec, quiet, first_attempt_outlived)

    assert not outcome.reused and seen[0] == pytest.approx(3 * spec.deadline_s)
    assert world.fake.calls("run.projects.locations.jobs.executions.cancel") == []
    assert body(world, "run.projects.locations.jobs.run")["overrides"]["timeout"] == "1s"


def test_a_failed_build_names_the_image_its_status_and_its_logs(world: FakeGoogleCloud) -> None:
    builder = backend_for(world).builder
    world.fake.builds_fail = True
    world.fake.work_polls = 2
    with pytest.raises(ConfigurationError) as raised:
        builder.build(JOB_IMAGE, on_log=quiet)
    message = str(raised.value)
    (build,) = world.fake.state.builds.values()  # the dependencies image, built first
    assert f"{world.names.image_repository}:deps-" in message and "FAILURE" in message
    assert "fix job_image/requirements.txt or job_image/deps.Dockerfile" in message
    assert build["logUrl"] in message and "non-zero status" in message
    assert "HTTP None" not in message
    assert len(world.fake.calls("cloudbuild.projects.builds.create")) == 1


def test_quota_refused_at_execution_time_is_reported_as_quota(
    world: FakeGoogleCloud, sample_dataset_path: Path
) -> None:
    backend = backend_for(world)
    image = backend.builder.build(JOB_IMAGE, on_log=quiet)
    world.fake.execution_mode = "quota"
    with pytest.raises(QuotaExceeded) as raised:
        backend.runner.run(image, job_spec(KEY, sample_dataset_path), quiet, quiet)
    message = str(raised.value)
    assert f"iam-admin/quotas?project={world.project}" in message and "L4" in message
    assert len(world.executions()) == 1


def test_a_first_revision_that_never_gets_ready_is_named_and_leaves_no_service(
    world: FakeGoogleCloud,
) -> None:
    server = backend_for(world).server
    world.fake.revisions_fail = True
    with pytest.raises(DeployFailed) as raised:
        server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)
    message = str(raised.value)
    assert "revision emoji-gemma-aaaaaaaa-" in message and REVISION_FAILURE in message
    assert "logs: https://console.cloud.google.com/logs/viewer?revision=" in message
    assert "deleted service" in message and world.names.service not in world.fake.state.resources
    assert len(world.fake.calls("run.projects.locations.services.delete")) == 1


def test_a_retry_is_announced_only_when_it_follows(world: FakeGoogleCloud) -> None:
    bootstrapper = build_gcp_bootstrap(world.settings(api_retry_deadline_s=0.5))
    logs: list[str] = []
    world.fake.inject("serviceusage.services.batchEnable", 503, "unavailable", times=1)
    bootstrapper.ensure_apis(logs.append)
    assert [line for line in logs if "retrying in" in line] == [logs[0]]
    assert len(world.fake.calls("serviceusage.services.batchEnable")) == 2

    logs.clear()
    world.fake.inject("iam.projects.serviceAccounts.create", 503, "unavailable", times=1000)
    with pytest.raises(DeadlineExceeded, match="gave up after") as raised:
        bootstrapper.ensure_account("trainer", logs.append)
    attempts = len(world.fake.calls("iam.projects.serviceAccounts.create"))
    assert len([line for line in logs if "retrying in" in line]) == attempts - 1
    assert "retrying" not in str(raised.value)


# ---------------------------------------------------------------------- least privilege

Binding = tuple[str, str, str, str | None]  # member, role, resource, condition expression


def written_bindings(world: FakeGoogleCloud) -> set[Binding]:
    """Every (member, role, resource, condition) in every IAM policy the fake holds."""
    return {
        (member, b["role"], resource, (b.get("condition") or {}).get("expression"))
        for resource, policy in world.fake.state.policies.items()
        for b in policy.get("bindings", [])
        for member in b["members"]
    }


def expected_bindings(world: FakeGoogleCloud) -> set[Binding]:
    """The README's table, spelled out: a change to any grant must change this test too."""
    n = world.names

    def sa(role: AccountRole) -> str:
        return f"serviceAccount:{n.account_email(role)}"

    project, bucket = f"projects/{world.project}", f"storage/buckets/{n.bucket}"
    objects = f"projects/_/buckets/{n.bucket}/objects"
    listing = 'resource.type == "storage.googleapis.com/Bucket"'
    models = f'resource.name.startsWith("{objects}/models/")'
    inputs = f'resource.name.startsWith("{objects}/inputs/")'
    builds = f'resource.name.startsWith("{objects}/builds/")'
    account = f"projects/{world.project}/serviceAccounts/"
    return {
        (sa("trainer"), "roles/secretmanager.secretAccessor", n.secret, None),
        (sa("trainer"), "roles/storage.objectUser", bucket, f"{listing} || {models} || {inputs}"),
        (sa("server"), "roles/storage.objectViewer", bucket, f"{listing} || {models}"),
        (sa("builder"), "roles/storage.objectViewer", bucket, builds),
        (sa("builder"), "roles/artifactregistry.writer", n.repository, None),
        (sa("builder"), "roles/logging.logWriter", project, None),
        (sa("runner"), "roles/run.developer", project, None),
        (sa("runner"), "roles/cloudbuild.builds.editor", project, None),
        (sa("runner"), "roles/logging.viewer", project, None),
        (sa("runner"), f"{project}/roles/emoji_finetune_service_iam", project, None),
        # serviceusage.quotas.get: the run's GPU quota check (read-only, no new API)
        (sa("runner"), "roles/serviceusage.serviceUsageViewer", project, None),
        (sa("runner"), "roles/storage.objectUser", bucket, None),
        (sa("runner"), "roles/artifactregistry.reader", n.repository, None),
        (sa("runner"), "roles/secretmanager.viewer", n.secret, None),
        (sa("runner"), "roles/iam.serviceAccountUser", account + n.trainer_email, None),
        (sa("runner"), "roles/iam.serviceAccountUser", account + n.server_email, None),
        (sa("runner"), "roles/iam.serviceAccountUser", account + n.account_email("builder"), None),
        (sa("runner"), "roles/iam.serviceAccountUser", account + n.account_email("runner"), None),
        (sa("runner"), "roles/iam.serviceAccountTokenCreator", account + n.invoker_email, None),
    }


def iam_writes(world: FakeGoogleCloud, since: int = 0) -> list[str]:
    return [
        r.method_id or r.path
        for r in world.fake.requests[since:]
        if r.mutating
        and (
            (r.method_id or "").endswith(("setIamPolicy", "serviceAccounts.create", "roles.create"))
            or r.path.endswith("/iam")
        )
    ]


def test_bootstrap_writes_exactly_the_least_privilege_bindings(world: FakeGoogleCloud) -> None:
    world.bootstrap()

    assert written_bindings(world) == expected_bindings(world)
    resources = world.fake.state.resources
    accounts = {r["email"] for name, r in resources.items() if "/serviceAccounts/" in name}
    assert accounts == {world.names.account_email(role) for role in ACCOUNT_ROLES}
    role = world.fake.resource(f"projects/{world.project}/roles/emoji_finetune_service_iam")
    assert role["includedPermissions"] == [
        "run.services.getIamPolicy",
        "run.services.setIamPolicy",
    ], "the runner may set the invoker of a service, and nothing else of IAM"
    (enable,) = world.fake.calls("serviceusage.services.batchEnable")
    assert {
        "iamcredentials.googleapis.com",
        "cloudresourcemanager.googleapis.com",
        "logging.googleapis.com",
    } <= set(enable.body["serviceIds"])
    bucket_policy = world.fake.state.policies[f"storage/buckets/{world.names.bucket}"]
    assert bucket_policy["version"] == 3, "conditional bindings need a version-3 policy"


def test_a_rerun_of_bootstrap_and_every_run_check_write_nothing(world: FakeGoogleCloud) -> None:
    world.bootstrap()
    before = len(world.fake.requests)
    world.bootstrap()
    assert [r.method_id for r in world.fake.requests[before:] if r.mutating] == []

    before = len(world.fake.requests)
    backend = build_gcp_backend(world.settings())
    report = backend.provisioner.ensure(on_log=quiet)
    assert report.created == ()
    assert [r.method_id for r in world.fake.requests[before:] if r.mutating] == []

    server = backend.server
    endpoint = server.deploy("models/aaaaaaaaaaaaaaaa", "emoji-gemma", 300)
    server.promote(endpoint)
    assert iam_writes(world, before) == ["run.projects.locations.services.setIamPolicy"]
    after_first = len(world.fake.requests)
    server.promote(server.deploy("models/bbbbbbbbbbbbbbbb", "emoji-gemma", 300))
    assert iam_writes(world, after_first) == [], "a rerun (even a new model) writes no IAM"
    invoker = (f"serviceAccount:{world.names.invoker_email}", "roles/run.invoker")
    assert {b[:2] for b in written_bindings(world) if b[2] == world.names.service} == {invoker}


def test_a_run_before_bootstrap_names_what_is_missing_and_the_command(
    world: FakeGoogleCloud,
) -> None:
    world.fake.enable_all()
    provisioner = build_gcp_backend(world.settings()).provisioner
    assert not provisioner.is_ready()
    with pytest.raises(ConfigurationError) as raised:
        provisioner.ensure(on_log=quiet)
    message = str(raised.value)
    assert f"service account {world.names.trainer_email} does not exist" in message
    assert f"python -m deployments.bootstrap --gcp-project {world.project}" in message
    assert "\n" not in message and world.fake.mutations() == []


def test_bootstrap_adopts_lost_create_races_redoes_stale_policies_and_waits_for_apis(
    world: FakeGoogleCloud,
) -> None:
    world.fake.propagation_calls = 2  # each API bootstrap enables answers 403 twice more
    created_meanwhile = (
        "iam.projects.serviceAccounts.create",
        "iam.projects.roles.create",
        "secretmanager.projects.secrets.create",
        "artifactregistry.projects.locations.repositories.create",
    )
    for method in created_meanwhile:  # another admin creates it between our get and create
        world.fake.inject(method, 409, "Resource already exists", "ALREADY_EXISTS", after=True)
    world.fake.change_concurrently("secretmanager.projects.secrets.setIamPolicy")
    world.fake.change_concurrently("cloudresourcemanager.projects.setIamPolicy")

    world.bootstrap()

    assert len(world.fake.calls("iam.projects.serviceAccounts.create")) == 5
    assert all(len(world.fake.calls(m)) == 1 for m in created_meanwhile[1:])
    assert len(world.fake.calls("secretmanager.projects.secrets.setIamPolicy")) == 3
    assert written_bindings(world) == expected_bindings(world)


def test_the_admin_command_bootstraps_the_project_and_a_rerun_is_unchanged(
    world: FakeGoogleCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_GCP__API_ENDPOINTS", json.dumps({"*": world.url}))
    project = world.project

    first = ensure_gcp(project, "europe-west1")

    assert first[f"gcp project {project}"].startswith("created apis, service account")
    assert written_bindings(world) == expected_bindings(world)
    assert ensure_gcp(project, None) == {f"gcp project {project}": "unchanged"}
