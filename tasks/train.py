"""Train: run the fine-tuning job once per lineage key and wait for it, with a deadline."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.contracts import ImageRef, JobOutcome, JobRunner, TrainJobSpec
from tasks.policy import CACHED_TASK_OPTIONS
from tasks.progress import ProgressReporter


@task(name="train", **CACHED_TASK_OPTIONS)
def train(runner: JobRunner, image: ImageRef, spec: TrainJobSpec, cache_key: str) -> JobOutcome:
    """Reuses a complete model already in the store instead of training it again."""
    logger = get_run_logger()
    reporter = ProgressReporter(
        key=f"training-{spec.lineage_key}",
        description=f"training {spec.lineage_key}",
        logger=logger,
    )
    outcome = runner.run(image, spec, on_log=logger.info, on_progress=reporter)
    logger.info(
        "model %s %s in %.0f s → %s",
        outcome.lineage_key,
        "reused" if outcome.reused else "trained",
        outcome.duration_s,
        outcome.output_uri,
    )
    return outcome
