"""THE pipeline: provision → build → train → verify → deploy → smoke, on `local` or `gcp`.

Read top to bottom, this is the runbook. Each step is a Prefect task that retries transient
failures only; provision, build, train and verify are cached on what the world still has
(`tasks/policy.py`), so a rerun with nothing changed trains nothing.
"""

from __future__ import annotations

from functools import partial

from prefect import flow, get_run_logger

from core.model_versions import serving_newer_generation
from core.report import PipelineResult
from flows.candidate import deploy_and_smoke_test
from flows.cost import run_cost
from flows.models import collect_versions
from flows.parameters import NOTHING_SET, PipelineParameters
from flows.plan import RunOutcome, plan_run
from flows.steps import StepRecorder
from flows.training_job import JOB_IMAGE_DIR, make_lineage, pin_revisions, train_job_spec
from flows.wiring import build_backend
from tasks.image import build_image
from tasks.provision import provision
from tasks.quota import check_gpu_quota
from tasks.report import publish_report
from tasks.serve import promote
from tasks.train import train
from tasks.verify import verify


@flow(name="emoji-finetune", log_prints=True)
def finetune_pipeline(settings: PipelineParameters = NOTHING_SET, plan: bool = False) -> RunOutcome:
    """Fine-tune the base model on the emoji dataset and serve it behind /v1/chat/completions.

    Args:
        settings: The settings to change for this run, grouped by step. Empty fields come from
            the worker's PIPELINE_* environment and `.env`, then the defaults (the codelab's).
        plan: Only report what a run would create, build, train and deploy, and its cost.
    """
    settings = settings.resolve()  # → PipelineSettings, validated; fails here on a bad value
    backend = build_backend(settings)
    if plan:  # reads only: no request that changes anything, no training process
        return plan_run(settings, backend)
    step = StepRecorder()

    # 0. Preflight: pin the inputs (fails on bad paths, rows or revisions, creating nothing),
    # and stop when the region has no GPU quota (before anything is built or trained).
    model_revision, dataset_revision = pin_revisions(settings)
    step(check_gpu_quota, backend)

    # 1. Provision the store (a folder locally; bucket, secret, registry… on GCP).
    step(provision, backend)

    # 2. Build the training image, addressed by the content hash of job_image/.
    image = step(build_image, backend, JOB_IMAGE_DIR)

    # 3. Train once per lineage key; a complete model already in the store is reused.
    lineage = make_lineage(settings, image, model_revision, dataset_revision)
    get_run_logger().info(
        "lineage key %s → %s", lineage.key, backend.store.uri_for(lineage.model_prefix)
    )
    trained = step(train, backend, image, train_job_spec(settings, lineage))

    # 4. Verify the weights and the evaluation gate; a model that fails is never served.
    prompt = settings.serving.smoke_prompt
    quality = settings.quality.model_dump()
    verified = step(verify, backend, lineage.model_prefix, lineage.key, prompt, quality)

    # 5 + 6. Deploy a candidate server next to the live one and smoke-test it; a failing
    # candidate is discarded and never gets traffic.
    endpoint, smoke = deploy_and_smoke_test(step, backend, settings, lineage.model_prefix)
    server = backend.server

    # 7. Traffic moves to the new model — unless a model of a newer generation of the same
    # dataset serves by now (runs of two close uploads may end in either order) — or the
    # server stops at the end of the run.
    newer = settings.keeps_serving and serving_newer_generation(
        partial(collect_versions, settings, backend), lineage.dataset, lineage.dataset_revision
    )
    if newer:
        serving_note = (
            f"not promoted: {newer.key} serves generation {newer.dataset_revision} of "
            f"{lineage.dataset}, newer than {lineage.dataset_revision}; "
            f"{server.discard(endpoint)}"
        )
        get_run_logger().warning(serving_note)
    elif settings.keeps_serving:
        step(promote, server, endpoint)
        serving_note = f"kept running; stop with `{server.how_to_stop(endpoint)}`"
    else:
        server.release(endpoint)
        serving_note = "stopped at the end of the run (use --keep-serving to leave it up)"

    cost = run_cost(settings, trained, step.records)  # GPU job + service instance time, in USD
    publish_report(lineage, verified, endpoint, smoke, step.records, serving_note, cost)
    return PipelineResult(
        lineage_key=lineage.key,
        model_uri=verified.uri,
        metrics=dict(verified.metrics),
        endpoint=endpoint,
        answer=smoke.answer,
        kept_serving=settings.keeps_serving and not newer,
        serving_note=serving_note,
        stop_hint=server.how_to_stop(endpoint),
        steps=step.records,
        cost=cost,
    )


if __name__ == "__main__":
    from flows.cli import main

    raise SystemExit(main())
