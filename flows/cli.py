"""Command line for the pipeline: `python -m flows.finetune [options]` or `emoji-pipeline`.

Options map one-to-one onto `PipelineSettings` fields (an option beats its `PIPELINE_…`
environment variable). Settings and local inputs are validated *before* Prefect starts, so
a typo exits with one line and creates nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pydantic.fields import FieldInfo

from core.contracts import ConfigurationError, PipelineError
from core.plan import PipelinePlan, render_plan
from core.revisions import check_dataset_source, check_model_source
from flows.settings import PipelineSettings, SettingsError, load_settings
from flows.wiring import build_backend

# option → (section, field); section None means a top-level field.
OPTIONS: dict[str, tuple[str | None, str]] = {
    "--backend": (None, "backend"),
    "--base-model": ("model", "base_model"),
    "--model-revision": ("model", "revision"),
    "--served-model-name": ("model", "served_model_name"),
    "--dataset": ("data", "dataset"),
    "--dataset-revision": ("data", "revision"),
    "--sample-size": ("data", "sample_size"),
    "--eval-size": ("data", "eval_size"),
    "--seed": ("data", "seed"),
    "--method": ("training", "method"),
    "--lora-r": ("training", "lora_r"),
    "--lora-alpha": ("training", "lora_alpha"),
    "--lora-dropout": ("training", "lora_dropout"),
    "--target-modules": ("training", "target_modules"),
    "--epochs": ("training", "epochs"),
    "--max-steps": ("training", "max_steps"),
    "--learning-rate": ("training", "learning_rate"),
    "--batch-size": ("training", "batch_size"),
    "--grad-accum": ("training", "grad_accum"),
    "--max-length": ("training", "max_length"),
    "--train-timeout": ("training", "timeout_s"),
    "--engine": ("serving", "engine"),
    "--port": ("serving", "port"),
    "--prompt": ("serving", "smoke_prompt"),
    "--max-tokens": ("serving", "max_tokens"),
    "--startup-timeout": ("serving", "startup_timeout_s"),
    "--store": ("local", "root"),
    "--gcp-project": ("gcp", "project"),
    "--gcp-region": ("gcp", "region"),
    "--gcp-bucket": ("gcp", "bucket"),
}
KEEP_SERVING = ("serving", "keep_serving")


def _field(section: str | None, name: str) -> FieldInfo:
    if section is None:
        return PipelineSettings.model_fields[name]
    section_type = PipelineSettings.model_fields[section].annotation
    return section_type.model_fields[name]  # type: ignore[union-attr]


def _help(section: str | None, name: str) -> str:
    info = _field(section, name)
    dotted = f"{section}.{name}" if section else name
    env = "PIPELINE_" + dotted.upper().replace(".", "__")
    default = info.default
    if isinstance(default, tuple):
        default = ",".join(default)
    text = info.description or info.title or dotted.replace("_", " ")
    return f"{text} [default: {default}; env {env}]"


PIPELINE_DESCRIPTION = (
    "Fine-tune a chat model to answer in emoji and serve it behind an OpenAI-compatible "
    "/v1/chat/completions endpoint: provision → build → train → verify → deploy → smoke."
)


def build_parser(
    prog: str = "python -m flows.finetune", description: str = PIPELINE_DESCRIPTION
) -> argparse.ArgumentParser:
    """The settings options, shared by every command that acts on a pipeline's resources."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Every option can also be set with its PIPELINE_… environment variable or .env.",
    )
    for option, (section, name) in OPTIONS.items():
        parser.add_argument(
            option, dest=f"{section or ''}:{name}", default=argparse.SUPPRESS,
            metavar=name.upper(), help=_help(section, name),
        )  # fmt: skip
    parser.add_argument(
        "--keep-serving",
        dest=":".join(KEEP_SERVING),
        action="store_true",
        default=argparse.SUPPRESS,
        help=_help(*KEEP_SERVING),
    )
    return parser


def finetune_parser() -> argparse.ArgumentParser:
    """The pipeline's command line: the settings options plus `--plan`."""
    parser = build_parser()
    parser.add_argument(
        "--plan",
        action="store_true",
        help="only print what a run would create, build, train and deploy, and its cost; "
        "send no request that changes anything and start no training",
    )
    return parser


def overrides_from_args(namespace: argparse.Namespace) -> dict[str, Any]:
    """`{"model": {"base_model": …}, "backend": …}` from the options actually given."""
    overrides: dict[str, Any] = {}
    for dest, value in vars(namespace).items():
        if ":" not in dest:
            continue  # a command's own flag, not a setting
        section, name = dest.split(":")
        target = overrides.setdefault(section, {}) if section else overrides
        target[name] = value
    return overrides


def settings_from_namespace(namespace: argparse.Namespace) -> PipelineSettings:
    """Validate the options given; raises SettingsError with one line."""
    return load_settings(**overrides_from_args(namespace))


def settings_from_argv(argv: Sequence[str] | None) -> PipelineSettings:
    """Parse, validate and preflight; raises SettingsError/ConfigurationError with one line."""
    settings = settings_from_namespace(finetune_parser().parse_args(argv))
    check_model_source(settings.model.base_model)
    check_dataset_source(settings.data.dataset)
    build_backend(settings)  # an unavailable backend is a settings error too
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = settings_from_argv(argv)
    except (SettingsError, ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from flows.finetune import finetune_pipeline

    plan = finetune_parser().parse_args(argv).plan  # parsed once already: cannot fail now
    try:
        result = finetune_pipeline(settings, plan=plan)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if isinstance(result, PipelinePlan):
        print(render_plan(result))
        return 0
    print_summary(result)
    return 0


def print_summary(result: Any) -> None:
    """The few lines an operator needs after a run (the full report is a Prefect artifact)."""
    metrics = ", ".join(
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in sorted(result.metrics.items())
    )
    url = f"{result.endpoint.base_url}/v1/chat/completions"
    print()
    print(f"model    {result.lineage_key}  ({result.model_uri})")
    print(f"metrics  {metrics}")
    print("steps    " + "  ".join(f"{s.name}={s.state}({s.seconds:.1f}s)" for s in result.steps))
    print(f"served   {url}  (model {result.endpoint.model!r}, {result.endpoint.engine})")
    print(f"answer   {result.answer}")
    if result.kept_serving:
        print()
        print("The server keeps running. Try it:")
        print(
            f"  curl -s {url} -H 'Content-Type: application/json' -d "
            f'\'{{"model": "{result.endpoint.model}", "messages": [{{"role": "user", '
            f'"content": "Translate to emoji: I love pizza"}}]}}\' '
            '| jq ".choices[0].message.content"'
        )
        print(f"Stop it with: {result.stop_hint}")
