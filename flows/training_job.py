"""From settings to what the training job runs: pinned inputs, resolved method, lineage,
the job's command line.

Kept out of the flow so the flow reads as a runbook and these rules can be tested alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger

from core.contracts import ImageRef, TrainJobSpec
from core.dataset_events import is_gcs_uri
from core.dataset_rows import check_dataset_rows
from core.lineage import Lineage
from core.revisions import (
    check_dataset_source,
    check_model_source,
    looks_like_path,
    resolve_dataset_revision,
    resolve_model_revision,
)
from flows.settings import PipelineSettings
from flows.wiring import pin_gcs_generation

JOB_IMAGE_DIR = Path(__file__).resolve().parent.parent / "job_image"


def check_inputs(settings: PipelineSettings) -> None:
    """The base model and the dataset exist, and every row of a local dataset is readable.

    The CLI runs this before Prefect starts and every run repeats it in step 0, so a bad input
    from the UI fails as early and as clearly as one from the command line.
    """
    check_model_source(settings.model.base_model)
    check_dataset_source(settings.data.dataset)
    if looks_like_path(settings.data.dataset):
        check_dataset_rows(Path(settings.data.dataset).expanduser(), settings.data.sample_size)


def check_hub_inputs(settings: PipelineSettings) -> None:
    """Hub ids resolve (reachable, known, accessible); local inputs are not hashed here."""
    if not looks_like_path(settings.model.base_model):
        resolve_model_revision(settings.model.base_model, settings.model.revision)
    if not looks_like_path(settings.data.dataset):
        resolve_dataset_revision(settings.data.dataset, settings.data.revision)


def pin_revisions(settings: PipelineSettings) -> tuple[str, str]:
    """(model revision, dataset revision) the run trains on; fails on bad paths, bad rows or
    unresolvable revisions before anything is created."""
    check_inputs(settings)
    model_revision = resolve_model_revision(settings.model.base_model, settings.model.revision)
    data = settings.data
    if is_gcs_uri(data.dataset):  # the object's generation (the one the event announced)
        return model_revision, pin_gcs_generation(settings, data.dataset, data.revision)
    dataset_revision = resolve_dataset_revision(settings.data.dataset, settings.data.revision)
    if settings.data.revision and settings.data.revision != dataset_revision:
        get_run_logger().warning(
            "dataset %s changed again since revision %s was requested: training on %s",
            settings.data.dataset,
            settings.data.revision,
            dataset_revision,
        )
    return model_revision, dataset_revision


def resolved_method(settings: PipelineSettings) -> str:
    """`auto` becomes what will really run, so the lineage never hides a LoRA/QLoRA switch.

    auto is LoRA on every backend (the job's `--method auto`): the bf16 base fits the L4.
    """
    return "lora" if settings.training.method == "auto" else settings.training.method


def source_argument(value: str) -> str:
    """Local paths go to the job absolute (it runs elsewhere); hub ids go as they are."""
    return str(Path(value).expanduser().resolve()) if looks_like_path(value) else value


def make_lineage(
    settings: PipelineSettings, image: ImageRef, model_revision: str, dataset_revision: str
) -> Lineage:
    training = settings.training.model_dump(mode="json", exclude={"timeout_s"})
    training["method"] = resolved_method(settings)
    return Lineage(
        base_model=settings.model.base_model,
        base_model_revision=model_revision,
        dataset=settings.data.dataset,
        dataset_revision=dataset_revision,
        sample_size=settings.data.sample_size,
        eval_size=settings.data.eval_size,
        seed=settings.data.seed,
        training=training,
        code_digest=image.content_hash,
    )


def train_job_spec(settings: PipelineSettings, lineage: Lineage) -> TrainJobSpec:
    """The job's CLI (see `job_image/finetune.py --help`); the runner adds `--output-dir`."""
    training = settings.training
    args: list[str] = [
        "--model", source_argument(settings.model.base_model),
        "--dataset", source_argument(settings.data.dataset),
        "--sample-size", str(settings.data.sample_size),
        "--eval-size", str(settings.data.eval_size),
        "--seed", str(settings.data.seed),
        "--lineage-key", lineage.key,
        "--lineage-json", json.dumps(lineage.as_dict(), sort_keys=True),
        "--method", str(lineage.training["method"]),
        "--lora-r", str(training.lora_r),
        "--lora-alpha", str(training.lora_alpha),
        "--lora-dropout", str(training.lora_dropout),
        "--target-modules", ",".join(training.target_modules),
        "--epochs", str(training.epochs),
        "--max-steps", str(training.max_steps),
        "--learning-rate", str(training.learning_rate),
        "--batch-size", str(training.batch_size),
        "--grad-accum", str(training.grad_accum),
        "--max-length", str(training.max_length),
    ]  # fmt: skip
    if not looks_like_path(settings.model.base_model):
        args += ["--model-revision", lineage.base_model_revision]
    if not looks_like_path(settings.data.dataset):
        args += ["--dataset-revision", lineage.dataset_revision]
    return TrainJobSpec(
        lineage_key=lineage.key,
        output_prefix=lineage.model_prefix,
        args=tuple(args),
        deadline_s=training.timeout_s,
    )
