"""THE pipeline: provision → build → train → verify → deploy → smoke, on `local` or `gcp`.

Read top to bottom, this is the runbook. Each step is a Prefect task with retries for
transient failures only; build, train and verify are cached on content keys computed here,
after checking that what a cached result points to still exists.

    python -m flows.finetune --help
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import State

from core.contracts import Backend, Endpoint
from core.lineage import Lineage
from core.report import StepRecord, render_report
from core.revisions import resolve_dataset_revision, resolve_model_revision
from core.smoke import SmokeResult
from core.verification import VerifiedModel, manifest_digest
from flows.plan import JOB_IMAGE_DIR, make_lineage, train_job_spec
from flows.settings import PipelineSettings, load_settings
from flows.wiring import build_backend
from tasks.image import build_image
from tasks.provision import provision
from tasks.serve import deploy, promote
from tasks.smoke import smoke_test
from tasks.train import train
from tasks.verify import verify, verify_cache_key

T = TypeVar("T")


@dataclass(frozen=True)
class PipelineResult:
    """What a run produced; also what the CLI prints."""

    lineage_key: str
    model_uri: str
    metrics: dict[str, Any]
    endpoint: Endpoint
    answer: str
    kept_serving: bool
    stop_hint: str
    steps: list[StepRecord] = field(default_factory=list)


class StepLog:
    """Runs each task with `return_state=True` so the report shows Cached vs Completed."""

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []

    def run(self, name: str, call: Callable[[], State[T]]) -> T:
        started = time.perf_counter()
        state = call()
        elapsed = time.perf_counter() - started
        self.steps.append(StepRecord(name, state.name or state.type.value, elapsed))
        return state.result()  # re-raises the task's error, failing the flow


@flow(name="emoji-finetune", log_prints=True)
def finetune_pipeline(settings: PipelineSettings | None = None) -> PipelineResult:
    """Fine-tune the base model on the emoji dataset and serve it behind /v1/chat/completions.

    Args:
        settings: Every pipeline setting, grouped by step. Fields left unset come from the
            worker's PIPELINE_* environment and `.env`, then the defaults (the codelab's).
    """
    settings = settings or load_settings()
    logger = get_run_logger()
    backend = build_backend(settings)
    log = StepLog()

    # 0. Preflight: pin the inputs (fails on bad paths / unresolvable revisions, creating nothing).
    model_revision = resolve_model_revision(settings.model.base_model, settings.model.revision)
    dataset_revision = resolve_dataset_revision(settings.data.dataset, settings.data.revision)
    if settings.data.revision and settings.data.revision != dataset_revision:
        logger.warning(
            "dataset %s changed again since revision %s was requested: training on %s",
            settings.data.dataset,
            settings.data.revision,
            dataset_revision,
        )

    # 1. Provision the store (a folder locally; bucket, secret, registry… on GCP).
    store, provisioner = backend.store, backend.provisioner
    log.run(
        "provision",
        lambda: provision.with_options(refresh_cache=not provisioner.is_ready())(
            provisioner, cache_key=f"provision-{backend.name}-{store.root_uri}", return_state=True
        ),
    )

    # 2. Build the training image, addressed by the content hash of job_image/.
    wanted = backend.builder.image_for(JOB_IMAGE_DIR)
    image = log.run(
        "build",
        lambda: build_image.with_options(refresh_cache=not backend.builder.exists(wanted))(
            backend.builder, JOB_IMAGE_DIR, cache_key=f"image-{wanted.digest}", return_state=True
        ),
    )

    # 3. Train once per lineage key; a complete model already in the store is reused.
    lineage = make_lineage(settings, image, model_revision, dataset_revision)
    logger.info("lineage key %s → %s", lineage.key, store.uri_for(lineage.model_prefix))
    spec = train_job_spec(settings, lineage)
    model_in_store = manifest_digest(store, lineage.model_prefix) is not None
    log.run(
        "train",
        lambda: train.with_options(refresh_cache=not model_in_store)(
            backend.runner, image, spec, cache_key=f"train-{lineage.key}", return_state=True
        ),
    )

    # 4. Verify the weights; the cache key is the manifest's hash, so new bytes re-verify.
    verified = _verify(log, backend, lineage, settings)

    # 5 + 6. Deploy a candidate server, smoke-test it, and only then let it serve.
    endpoint = log.run(
        "deploy",
        lambda: deploy(
            backend.server,
            lineage.model_prefix,
            settings.model.served_model_name,
            settings.serving.startup_timeout_s,
            return_state=True,
        ),
    )
    smoke = _smoke_or_discard(log, backend, endpoint, settings)
    if settings.keeps_serving:
        log.run("promote", lambda: promote(backend.server, endpoint, return_state=True))
        serving_note = f"kept running; stop with `{backend.server.how_to_stop(endpoint)}`"
    else:
        backend.server.release(endpoint)
        serving_note = "stopped at the end of the run (use --keep-serving to leave it up)"

    _publish_report(lineage, verified, endpoint, smoke, log.steps, serving_note)
    return PipelineResult(
        lineage_key=lineage.key,
        model_uri=verified.uri,
        metrics=dict(verified.metrics),
        endpoint=endpoint,
        answer=smoke.answer,
        kept_serving=settings.keeps_serving,
        stop_hint=backend.server.how_to_stop(endpoint),
        steps=log.steps,
    )


def _verify(
    log: StepLog, backend: Backend, lineage: Lineage, settings: PipelineSettings
) -> VerifiedModel:
    digest = manifest_digest(backend.store, lineage.model_prefix) or "absent"
    quality = settings.quality.model_dump()  # the gate's thresholds (core.quality_gate)
    return log.run(
        "verify",
        lambda: verify(
            backend.store,
            lineage.model_prefix,
            lineage.key,
            settings.serving.smoke_prompt,
            quality,
            cache_key=verify_cache_key(lineage.key, digest, quality),
            return_state=True,
        ),
    )


def _smoke_or_discard(
    log: StepLog, backend: Backend, endpoint: Endpoint, settings: PipelineSettings
) -> SmokeResult:
    """A candidate that fails its smoke test is stopped; the live server keeps serving."""
    serving = settings.serving
    try:
        return log.run(
            "smoke",
            lambda: smoke_test(
                backend.server,
                endpoint,
                serving.smoke_prompt,
                serving.max_tokens,
                serving.smoke_timeout_s,
                return_state=True,
            ),
        )
    except BaseException:
        backend.server.discard(endpoint)
        raise


def _publish_report(
    lineage: Lineage,
    verified: VerifiedModel,
    endpoint: Endpoint,
    smoke: SmokeResult,
    steps: list[StepRecord],
    serving_note: str,
) -> None:
    markdown = render_report(
        lineage_key=lineage.key,
        model_uri=verified.uri,
        lineage=lineage.as_dict(),
        metrics=verified.metrics,
        endpoint=endpoint.base_url,
        served_model=endpoint.model,
        prompt=smoke.prompt,
        answer=smoke.answer,
        latency_s=smoke.latency_s,
        steps=steps,
        serving_note=serving_note,
    )
    create_markdown_artifact(markdown, key="finetune-report", description=f"model {lineage.key}")


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main())
