"""One typed `PipelineSettings`: every knob of the pipeline, validated before anything runs.

Values come from (highest first) explicit arguments (CLI / flow parameters), environment
variables prefixed `PIPELINE_` (nested with `__`, e.g. `PIPELINE_TRAINING__LEARNING_RATE`),
a `.env` file in the working directory (or the file `PIPELINE_ENV_FILE` names), then the
defaults below, which reproduce the Cloud Run fine-tuning codelab.
A bad value fails here, with the field and the fix, before any cloud change or GPU minute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tasks.backends.gcp.config import ENV_ONLY, GPU_TASK_CAP_S, GcpSettings

ENV_PREFIX = "PIPELINE_"
# The CLI option of each setting ("" = environment only); flows/cli.py builds its parser from
# this, and every error message names the option next to the environment variable.
CLI_OPTIONS: dict[str, str] = {
    "backend": "--backend",
    "model.base_model": "--base-model",
    "model.revision": "--model-revision",
    "model.served_model_name": "--served-model-name",
    "data.dataset": "--dataset",
    "data.revision": "--dataset-revision",
    "data.sample_size": "--sample-size",
    "data.eval_size": "--eval-size",
    "data.seed": "--seed",
    "training.method": "--method",
    "training.lora_r": "--lora-r",
    "training.lora_alpha": "--lora-alpha",
    "training.lora_dropout": "--lora-dropout",
    "training.target_modules": "--target-modules",
    "training.epochs": "--epochs",
    "training.max_steps": "--max-steps",
    "training.learning_rate": "--learning-rate",
    "training.batch_size": "--batch-size",
    "training.grad_accum": "--grad-accum",
    "training.max_length": "--max-length",
    "training.timeout_s": "--train-timeout",
    "serving.engine": "--engine",
    "serving.port": "--port",
    "serving.smoke_prompt": "--prompt",
    "serving.max_tokens": "--max-tokens",
    "serving.startup_timeout_s": "--startup-timeout",
    "serving.keep_serving": "--keep-serving",
    "local.root": "--store",
    "gcp.project": "--gcp-project",
    "gcp.region": "--gcp-region",
    "gcp.bucket": "--gcp-bucket",
}


def env_variable(dotted: str) -> str:
    """`training.lora_r` → `PIPELINE_TRAINING__LORA_R`."""
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def how_to_set(dotted: str) -> str:
    """`PIPELINE_GCP__REGION or --gcp-region`: what an operator edits to change a setting."""
    option = CLI_OPTIONS.get(dotted)
    return f"{env_variable(dotted)} or {option}" if option else env_variable(dotted)


def is_env_only(info: FieldInfo) -> bool:
    """Fields marked `ENV_ONLY` (test hooks) are never flow parameters or CLI options."""
    extra = info.json_schema_extra
    return isinstance(extra, dict) and all(
        extra.get(key) == value for key, value in ENV_ONLY.items()
    )


CODELAB_PROMPT = (
    "Translate to emoji: I ate a banana for breakfast, later I'm thinking of having soup!"
)

PositiveSeconds = Annotated[float, Field(gt=0, le=24 * 3600)]


class _Section(BaseModel):
    """Sections reject unknown keys so a typo is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Section):
    """The base model and the name the served model answers to."""

    base_model: str = Field(
        "google/gemma-3-1b-it",
        title="Base model",
        description="Hugging Face model id, or a local folder holding a chat model.",
        min_length=1,
    )
    revision: str | None = Field(
        None,
        title="Base model revision",
        description="Commit sha of a hub model (pin it for reproducible lineage).",
    )
    served_model_name: str = Field(
        "emoji-gemma",
        title="Served model name",
        description="Name clients put in the request's `model` field.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
    )


class DataSettings(_Section):
    """Which rows train and evaluate the model."""

    dataset: str = Field(
        "KomeijiForce/Text2Emoji",
        title="Dataset",
        description="Hugging Face dataset id, or a local .jsonl/.csv with text, emoji, topic.",
        min_length=1,
    )
    revision: str | None = Field(
        None,
        title="Dataset revision",
        description="Commit sha of a hub dataset; local files are addressed by content hash.",
    )
    sample_size: int = Field(
        1000, ge=8, le=1_000_000, description="Rows drawn at random for training + evaluation."
    )
    eval_size: int = Field(50, ge=1, description="Rows of the sample held out for evaluation.")
    seed: int = Field(42, ge=0, description="Seed for sampling, LoRA init and training order.")

    @model_validator(mode="after")
    def _eval_leaves_training_rows(self) -> DataSettings:
        if self.eval_size >= self.sample_size:
            raise ValueError(
                f"data.eval_size ({self.eval_size}) must be smaller than data.sample_size "
                f"({self.sample_size}); lower {how_to_set('data.eval_size')}, or raise "
                f"{how_to_set('data.sample_size')}"
            )
        return self


class TrainingSettings(_Section):
    """LoRA/QLoRA hyperparameters and the training deadline."""

    method: Literal["auto", "lora", "qlora"] = Field(
        "auto",
        description="auto = LoRA on the bf16 base (fp32 on a CPU); qlora = 4-bit NF4 base.",
    )
    lora_r: int = Field(16, ge=1, le=512, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, le=4096, description="LoRA scaling (alpha).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on LoRA layers.")
    # NoDecode: the env value "q_proj,v_proj" reaches the comma splitter below, not a JSON parser.
    target_modules: Annotated[tuple[str, ...], NoDecode] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        min_length=1,
        description="Modules that get LoRA adapters (comma-separated on the CLI).",
    )
    # The defaults below equal job_image/config.yaml's (a test holds them together); the
    # recipe and its sizing are explained there.
    epochs: float = Field(3.0, gt=0, le=100, description="Passes over the training rows.")
    max_steps: int = Field(-1, ge=-1, description="Optimizer steps; -1 = run the full epochs.")
    learning_rate: float = Field(2e-4, gt=0, le=1.0, description="Peak learning rate.")
    batch_size: int = Field(
        2, ge=1, le=1024, description="Packed rows of max_length tokens per micro-batch."
    )
    grad_accum: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    max_length: int = Field(256, ge=16, le=32768, description="Max tokens per example.")
    timeout_s: PositiveSeconds = Field(
        3600, description="Deadline for one training job (Cloud Run caps GPU tasks at 1 h)."
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        """Accept "q_proj,v_proj" from the CLI or an env var as well as a list."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class QualitySettings(_Section):
    """The evaluation gate: what the held-out metrics must show before a model is served."""

    min_emoji_only_rate: float = Field(
        0.5, ge=0.0, le=1.0, description="Least share of held-out answers that are emoji only."
    )
    max_eval_loss: float | None = Field(
        None, gt=0, description="Highest held-out answer loss allowed; unset = no absolute cap."
    )
    require_improvement_over_base: bool = Field(
        True,
        description=(
            "The tuned model must beat the base model on the same held-out rows: lower loss, "
            "emoji-only rate and emoji F1 no worse."
        ),
    )
    max_loss_regression: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Relative slack on 'lower loss', for a base that is already near-perfect on these "
            "rows like the tiny demo model (0.1 = up to 10% above the base's loss)."
        ),
    )


class ServingSettings(_Section):
    """The model server, its deadlines and the smoke test."""

    engine: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="Local server: vLLM's OpenAI server when importable, else transformers."
    )
    host: str = Field("127.0.0.1", description="Local servers bind here (loopback by default).")
    port: int = Field(0, ge=0, le=65535, description="0 = pick a free port.")
    startup_timeout_s: PositiveSeconds = Field(
        300, description="Deadline for the server to load the model and answer /health."
    )
    keep_serving: bool | None = Field(
        None,
        description=(
            "Leave the new server serving after the run; unset = the backend's default "
            "(a Cloud Run service stays, a local server stops)."
        ),
    )
    smoke_prompt: str = Field(
        CODELAB_PROMPT, min_length=1, description="Prompt of the smoke test (and verify)."
    )
    smoke_timeout_s: PositiveSeconds = Field(120, description="Deadline of the smoke request.")
    max_tokens: int = Field(24, ge=1, le=4096, description="Answer budget of the smoke test.")


class LocalSettings(_Section):
    """The `local` backend: where its store folder lives."""

    root: Path = Field(
        Path(".pipeline"),
        description="Folder standing in for the bucket: models/, runs/ and the server state.",
    )


class PipelineSettings(BaseSettings):
    """Everything one pipeline run needs, grouped by the step that uses it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=os.environ.get("PIPELINE_ENV_FILE", ".env"),
        extra="forbid",
        frozen=True,
    )

    backend: Literal["local", "gcp"] = Field(
        "local", description="local = one machine; gcp = Cloud Run GPU job + service."
    )
    model: ModelSettings = ModelSettings()
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    quality: QualitySettings = QualitySettings()
    serving: ServingSettings = ServingSettings()
    local: LocalSettings = LocalSettings()
    gcp: GcpSettings = GcpSettings()

    @property
    def keeps_serving(self) -> bool:
        """Whether a model that passed its smoke test takes over serving after the run."""
        if self.serving.keep_serving is not None:
            return self.serving.keep_serving
        return self.backend == "gcp"

    @model_validator(mode="after")
    def _backend_has_what_it_needs(self) -> PipelineSettings:
        if self.backend != "gcp":
            return self
        if not self.gcp.project:
            raise ValueError(f"backend 'gcp' needs gcp.project: set {how_to_set('gcp.project')}")
        if self.training.timeout_s > GPU_TASK_CAP_S:
            raise ValueError(
                f"training.timeout_s ({self.training.timeout_s:g}) exceeds Cloud Run's "
                f"{GPU_TASK_CAP_S} s cap on GPU job tasks; lower {how_to_set('training.timeout_s')}"
            )
        return self


class SettingsError(ValueError):
    """Settings are invalid; `str()` is one line per problem, each naming field and fix."""


def load_settings(**overrides: object) -> PipelineSettings:
    """Build settings from overrides + environment, turning pydantic's report into one line."""
    try:
        return PipelineSettings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


def describe_validation_error(error: ValidationError) -> str:
    """`invalid setting training.learning_rate='-1': Input should be greater than 0 (set
    PIPELINE_TRAINING__LEARNING_RATE or --learning-rate)`.

    Each problem names the dotted field and the variable and option that set it, so an
    operator can fix a scheduled run without reading code; a rule across fields names its
    fields itself. Input values are echoed only for scalar fields (settings hold no secrets,
    but long blobs make bad one-liners).
    """
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if not isinstance(part, int))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problems.append(
                f"unknown setting {location}: remove {env_variable(location)} from the "
                "environment or .env (or the field from the run's parameters)"
            )
        elif not _is_setting(location):  # a rule across fields: its message names them
            problems.append(f"invalid settings: {message}")
        else:
            given = item.get("input")
            shown = f"={given!r}" if isinstance(given, str | int | float | bool) else ""
            problems.append(
                f"invalid setting {location}{shown}: {message} (set {how_to_set(location)})"
            )
    return "; ".join(problems)


def _is_setting(dotted: str) -> bool:
    """True for a leaf field such as `gcp.region`; False for a section (`gcp`) or the whole."""
    model: type[BaseModel] = PipelineSettings
    for part in dotted.split(".") if dotted else []:
        info = model.model_fields.get(part)
        if info is None:
            return True  # a field pydantic knows and we do not: report it as given
        annotation = info.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return True
        model = annotation
    return False
