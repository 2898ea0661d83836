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
from flows.parameters import PipelineParameters
from flows.settings import CLI_OPTIONS, PipelineSettings, SettingsError, env_variable, load_settings
from flows.training_job import check_hub_inputs, check_inputs
from flows.wiring import build_backend

SETTING = "setting:"  # argparse dest prefix of a settings option (vs. a command's own flag)
FLAGS = ("serving.keep_serving",)  # settings that are a bare switch on the command line


def _field(dotted: str) -> FieldInfo:
    *sections, name = dotted.split(".")
    model: Any = PipelineSettings
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[name]  # type: ignore[no-any-return]


def _help(dotted: str) -> str:
    info = _field(dotted)
    default = info.default
    if isinstance(default, tuple):
        default = ",".join(default)
    text = info.description or info.title or dotted.replace("_", " ")
    return f"{text} [default: {default}; env {env_variable(dotted)}]"


PIPELINE_DESCRIPTION = (
    "Fine-tune a chat model to answer in emoji and serve it behind an OpenAI-compatible "
    "/v1/chat/completions endpoint: provision → build → train → verify → deploy → smoke."
)


def build_parser(
    prog: str = "python -m flows.finetune",
    description: str = PIPELINE_DESCRIPTION,
    sections: tuple[str, ...] | None = None,
) -> argparse.ArgumentParser:
    """The settings options (of `sections` only, when given: top-level fields count as one)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Every option can also be set with its PIPELINE_… environment variable or .env.",
    )
    for dotted, option in CLI_OPTIONS.items():
        if sections is not None and dotted.split(".")[0] not in sections:
            continue
        flag = (
            {"action": "store_true"}
            if dotted in FLAGS
            else {"metavar": dotted.split(".")[-1].upper()}
        )
        parser.add_argument(
            option, dest=SETTING + dotted, default=argparse.SUPPRESS, help=_help(dotted), **flag
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
        if not dest.startswith(SETTING):
            continue  # a command's own flag, not a setting
        *sections, name = dest.removeprefix(SETTING).split(".")
        target = overrides
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return overrides


def settings_from_namespace(namespace: argparse.Namespace) -> PipelineSettings:
    """Validate the options given; raises SettingsError with one line."""
    return load_settings(**overrides_from_args(namespace))


def as_parameters(settings: PipelineSettings, namespace: argparse.Namespace) -> PipelineParameters:
    """The options given, as flow parameters: only those, so the flow merges them over the
    environment exactly as it does for a UI run (values as the settings parsed them)."""
    return PipelineParameters.model_validate(
        _pick(settings.model_dump(), overrides_from_args(namespace))
    )


def _pick(values: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _pick(values[key], wanted) if isinstance(wanted, dict) else values[key]
        for key, wanted in shape.items()
    }


def preflight(namespace: argparse.Namespace) -> PipelineParameters:
    """Settings, inputs (rows of a local dataset, hub ids) and backend, checked before Prefect
    starts; raises SettingsError/ConfigurationError with one line."""
    settings = settings_from_namespace(namespace)
    check_inputs(settings)
    check_hub_inputs(settings)
    build_backend(settings)  # an unavailable backend is a settings error too
    return as_parameters(settings, namespace)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        namespace = finetune_parser().parse_args(argv)
        parameters = preflight(namespace)
    except (SettingsError, ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from flows.finetune import finetune_pipeline

    try:
        result = finetune_pipeline(parameters, plan=namespace.plan)
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
    served = f"model {result.endpoint.model!r}, {result.endpoint.engine}"
    print()
    print(f"model    {result.lineage_key}  ({result.model_uri})")
    print(f"metrics  {metrics}")
    print("steps    " + "  ".join(f"{s.name}={s.state}({s.seconds:.1f}s)" for s in result.steps))
    if result.kept_serving:
        print(f"served   {url}  ({served})")
    else:
        print(f"served   smoke-tested ({served}); {result.serving_note}")
    print(f"answer   {result.answer}")
    for number, line in enumerate(result.cost):
        print(f"{'cost' if number == 0 else '':<9}{line}")
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
