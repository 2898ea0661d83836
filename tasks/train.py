"""Train: run the fine-tuning job once per lineage key and wait for it, with a deadline."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.contracts import Backend, ImageRef, JobOutcome, TrainJobSpec
from core.verification import manifest_digest
from tasks.policy import CACHED_TASK_OPTIONS, Parameters, world_checked
from tasks.progress import ProgressReporter


def _lineage_key(parameters: Parameters) -> tuple[str]:
    spec: TrainJobSpec = parameters["spec"]
    return (spec.lineage_key,)


def _model_sealed(parameters: Parameters) -> bool:
    """A model folder with its MANIFEST.json (written last) is complete; without it, train."""
    backend: Backend = parameters["backend"]
    spec: TrainJobSpec = parameters["spec"]
    return manifest_digest(backend.store, spec.output_prefix) is not None


trained_model_key = world_checked("train", _lineage_key, _model_sealed)


@task(name="train", cache_key_fn=trained_model_key, **CACHED_TASK_OPTIONS)
def train(backend: Backend, image: ImageRef, spec: TrainJobSpec) -> JobOutcome:
    """Reuses a complete model already in the store instead of training it again."""
    logger = get_run_logger()
    reporter = ProgressReporter(
        key=f"training-{spec.lineage_key}",
        description=f"training {spec.lineage_key}",
        logger=logger,
    )
    outcome = backend.runner.run(image, spec, on_log=logger.info, on_progress=reporter)
    logger.info(
        "model %s %s in %.0f s → %s",
        outcome.lineage_key,
        "reused" if outcome.reused else "trained",
        outcome.duration_s,
        outcome.output_uri,
    )
    return outcome
