"""Plan mode: the resolved inputs, the lineage key, and what a run would create, build, train
and deploy, with its cost — from reads only. No request that changes anything is sent and no
training process starts; `python -m flows.finetune --plan` or the flow parameter `plan: true`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from core.contracts import Backend, PipelineError
from core.cost import Usage
from core.model_versions import ModelVersion, changed_settings, read_version
from core.plan import Facts, PipelinePlan, decide_plan, gcp_cost, render_plan
from core.quality_gate import QualityThresholds
from core.report import PipelineResult
from core.verification import manifest_digest
from flows.settings import PipelineSettings, TrainingSettings
from flows.training_job import JOB_IMAGE_DIR, make_lineage, pin_revisions
from flows.wiring import build_inventory, build_serving_lookup

PLAN_KEY = "finetune-plan"
RunOutcome = PipelineResult | PipelinePlan  # what the pipeline flow returns (a run or a plan)
T = TypeVar("T")


def _read(read: Callable[[], T], unknown: T) -> T:
    """A read that may fail before provisioning (API disabled, no bucket yet) → `unknown`."""
    try:
        return read()
    except (PipelineError, FileNotFoundError) as error:
        get_run_logger().info("plan: unreadable for now (%s)", error)
        return unknown


def _verdict(version: ModelVersion | None) -> str:
    if version is None:
        return "not trained yet"
    return version.verdict + (f": {'; '.join(version.reasons)}" if version.reasons else "")


def plan_run(settings: PipelineSettings, backend: Backend) -> PipelinePlan:
    """Everything a run would do with these settings, and nothing done."""
    model_revision, dataset_revision = pin_revisions(settings)
    image = backend.builder.image_for(JOB_IMAGE_DIR)
    lineage = make_lineage(settings, image, model_revision, dataset_revision)
    prefix, store = lineage.model_prefix, backend.store
    sealed = _read(lambda: manifest_digest(store, prefix) is not None, None)
    defaults = TrainingSettings().model_dump(mode="json", exclude={"timeout_s"})
    thresholds = QualityThresholds(**settings.quality.model_dump())
    version = read_version(store, lineage.key, defaults, thresholds, {}) if sealed else None
    facts = Facts(
        resources=build_inventory(backend).resources(),
        image_uri=image.uri,
        image_built=_read(lambda: backend.builder.find(image) is not None, None),
        model_sealed=sealed,
        model_verdict=_verdict(version),
        serving=_read(build_serving_lookup(backend).serving, {}),
        keeps_serving=settings.keeps_serving,
        quota=backend.provisioner.gpu_quota(),  # a read; unreadable is a line, not an error
    )  # fmt: skip
    steps = tuple(decide_plan(lineage.key, facts))
    cost, notes = {}, ("local backend: runs on this machine ($0)",)
    if backend.name == "gcp":
        gcp = settings.gcp
        instance = Usage(0.0, 1, gcp.cpu, gcp.memory_gib)
        cost, notes = gcp_cost(steps, settings.training.timeout_s, instance, gcp.prices())
    plan = PipelinePlan(
        backend=backend.name,
        inputs={
            "base model": f"{settings.model.base_model} @ {model_revision}",
            "dataset": f"{settings.data.dataset} @ {dataset_revision}",
            "rows": f"{settings.data.sample_size} sampled (seed {settings.data.seed}), "
            f"{settings.data.eval_size} held out",
            "training": ", ".join(
                f"{k}={v}" for k, v in changed_settings(lineage.training, defaults).items()
            ),
            "served as": settings.model.served_model_name,
        },
        lineage_key=lineage.key,
        model_uri=store.uri_for(prefix),
        steps=steps,
        cost=cost,
        cost_notes=notes,
    )
    text = render_plan(plan)
    create_markdown_artifact(f"```\n{text}\n```\n", key=PLAN_KEY, description=f"plan {lineage.key}")
    return plan
