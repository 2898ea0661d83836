"""The Cloud Run resources we ask for, as pure functions of settings (no API calls).

Kept apart from the code that sends them so the contract tests can read exactly what Google
receives, and so "does the live resource already match?" is one comparison: a desired spec is
*covered* by the live one when every field we set has the value we want (Google fills in
defaults we never send, so equality would always say "changed" and every run would update).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from google.cloud import run_v2
from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict

from tasks.backends.gcp.config import (
    GPU_TASK_CAP_S,
    SERVICE_MAX_INSTANCES,
    GcpNames,
    GcpSettings,
)
from tasks.backends.gcp.store import MOUNT_PATH

VOLUME = "store"
TRAINER = "trainer"
SERVER = "vllm"
SERVER_PORT = 8000
LOAD_FORMAT = "runai_streamer"  # vLLM's Run:ai model streamer; reads gs:// (vLLM >= 0.11.1)
JOB_USER_ID = 10001  # the non-root user of job_image/Dockerfile: owns files it writes
PROBE_PERIOD_S = 10
PROBE_TIMEOUT_S = 5
LABELS = {"app": "emoji-finetune"}
GPU_LIMIT = "nvidia.com/gpu"
ATTEMPT_ENV = "PIPELINE_ATTEMPT_ID"  # tags an execution with the start that made it
PROMOTED_LABEL = "promoted"  # "false" until a revision of the service passed its smoke test


def duration(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=math.ceil(seconds))


def _resources(settings: GcpSettings) -> run_v2.ResourceRequirements:
    return run_v2.ResourceRequirements(
        limits={"cpu": str(settings.cpu), "memory": f"{settings.memory_gib}Gi", GPU_LIMIT: "1"},
        cpu_idle=False,  # a GPU instance must keep its CPU: Cloud Run requires it
        startup_cpu_boost=True,
    )


def job_spec(settings: GcpSettings, names: GcpNames, image_uri: str) -> run_v2.Job:
    """The training job: 1× L4, the bucket mounted read-write, HF_TOKEN from the secret.

    Per-run arguments come as execution overrides, so one job serves every lineage key.
    """
    container = run_v2.Container(
        name=TRAINER,
        image=image_uri,
        resources=_resources(settings),
        env=[
            run_v2.EnvVar(
                name="HF_TOKEN",
                value_source=run_v2.EnvVarSource(
                    secret_key_ref=run_v2.SecretKeySelector(
                        secret=names.secret_id, version="latest"
                    )
                ),
            )
        ],
        volume_mounts=[run_v2.VolumeMount(name=VOLUME, mount_path=MOUNT_PATH)],
    )
    task = run_v2.TaskTemplate(
        containers=[container],
        volumes=[
            run_v2.Volume(
                name=VOLUME,
                gcs=run_v2.GCSVolumeSource(
                    bucket=names.bucket,
                    read_only=False,
                    mount_options=["implicit-dirs", f"uid={JOB_USER_ID}", f"gid={JOB_USER_ID}"],
                ),
            )
        ],
        max_retries=settings.max_retries,
        timeout=duration(GPU_TASK_CAP_S),
        service_account=names.trainer_email,  # the HF secret and the bucket's models/, inputs/
        execution_environment=run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2,
        node_selector=run_v2.NodeSelector(accelerator=settings.gpu_type),
        gpu_zonal_redundancy_disabled=not settings.gpu_zonal_redundancy,
    )
    return run_v2.Job(
        labels=LABELS,
        template=run_v2.ExecutionTemplate(
            labels=LABELS, task_count=1, parallelism=1, template=task
        ),
    )


def run_overrides(
    args: Sequence[str], deadline_s: float, attempt: str
) -> run_v2.RunJobRequest.Overrides:
    """One execution's arguments, attempt id and task timeout (within the 1 h GPU cap)."""
    return run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(
                name=TRAINER,
                args=list(args),
                env=[run_v2.EnvVar(name=ATTEMPT_ENV, value=attempt)],
            )
        ],
        task_count=1,
        timeout=duration(min(deadline_s, GPU_TASK_CAP_S)),
    )


def vllm_args(model: str, served_model_name: str, port: int = SERVER_PORT) -> list[str]:
    """vLLM's OpenAI server arguments; `make test-vllm` runs exactly these on CPU.

    `model` is the model's `gs://` folder on Cloud Run (a local folder in that test). The
    Run:ai model streamer reads the safetensors with concurrent ranged reads straight into
    memory, where a Cloud Storage FUSE mount reads them one sequential stream at a time;
    vLLM pulls config, tokenizer and chat template from the same folder first.
    """
    return [
        "--model", model,
        "--load-format", LOAD_FORMAT,
        "--served-model-name", served_model_name,
        "--host", "0.0.0.0",
        "--port", str(port),
        "--generation-config", "auto",
        "--dtype", "bfloat16",  # Gemma 3 overflows in fp16
    ]  # fmt: skip


def vllm_command() -> list[str]:
    """The OpenAI-compatible entrypoint (`vllm.entrypoints.api_server` has no chat route)."""
    return ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def startup_probe(deadline_s: float) -> run_v2.Probe:
    """/health polled every 10 s until the weights are loaded, for up to `deadline_s`.

    The default TCP probe gives up after 240 s, too short for pulling the ~10 GB vLLM image,
    streaming the weights from Cloud Storage and warming up on a cold instance.
    """
    return run_v2.Probe(
        http_get=run_v2.HTTPGetAction(path="/health", port=SERVER_PORT),
        initial_delay_seconds=0,
        period_seconds=PROBE_PERIOD_S,
        timeout_seconds=PROBE_TIMEOUT_S,
        failure_threshold=max(1, math.ceil(deadline_s / PROBE_PERIOD_S)),
    )


def revision_template(
    settings: GcpSettings,
    names: GcpNames,
    model_uri: str,
    served_model_name: str,
    deadline_s: float,
) -> run_v2.RevisionTemplate:
    """vLLM on 1× L4 streaming the versioned model folder from its `gs://` address.

    No bucket volume: the streamer reads Cloud Storage itself, with the service account's
    credentials from the metadata server (read access to models/ is all that account has).
    """
    container = run_v2.Container(
        name=SERVER,
        image=settings.vllm_image,
        command=vllm_command(),
        args=vllm_args(model_uri, served_model_name),
        ports=[run_v2.ContainerPort(container_port=SERVER_PORT)],
        resources=_resources(settings),
        startup_probe=startup_probe(deadline_s),
    )
    return run_v2.RevisionTemplate(
        labels=LABELS,
        containers=[container],
        # No revision-level minimum: Cloud Run keeps that many instances for every revision
        # in the traffic list or tagged, 0 % candidates included; `gcp.min_instances` is the
        # service-level minimum (`service_scaling`), which follows the traffic.
        scaling=run_v2.RevisionScaling(max_instance_count=SERVICE_MAX_INSTANCES),
        service_account=names.server_email,  # reads models/, nothing else
        execution_environment=run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2,
        node_selector=run_v2.NodeSelector(accelerator=settings.gpu_type),
        gpu_zonal_redundancy_disabled=not settings.gpu_zonal_redundancy,
        max_instance_request_concurrency=16,
    )


def service_scaling(settings: GcpSettings) -> run_v2.ServiceScaling:
    """Instances kept warm for the revisions that get traffic (none for 0 % candidates)."""
    return run_v2.ServiceScaling(min_instance_count=settings.min_instances)


def revision_name(service_id: str, lineage_key: str, template: run_v2.RevisionTemplate) -> str:
    """Deterministic: the same model with the same settings is the same revision (no update
    on a rerun); any other change gets a new name, since Cloud Run never reuses one."""
    body = json.dumps(as_dict(template), sort_keys=True).encode()
    return f"{service_id}-{lineage_key[:8]}-{hashlib.sha256(body).hexdigest()[:8]}"


def candidate_tag(lineage_key: str) -> str:
    """The traffic tag giving a candidate revision its own URL before it gets traffic."""
    return f"m-{lineage_key[:12]}"


def as_dict(message: Any) -> dict[str, Any]:
    """A proto-plus or protobuf message as Google's JSON (camelCase keys)."""
    raw = message._pb if hasattr(message, "_pb") else message
    return MessageToDict(raw)


def covers(live: object, desired: object) -> bool:
    """True when every field set in `desired` has the same value in `live` (recursively)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            covers(live.get(key), value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(covers(a, b) for a, b in zip(live, desired, strict=True))
        )
    return live == desired
