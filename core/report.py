"""The run report: what an operator opens in the Prefect UI after a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.contracts import Endpoint
from core.rejection import REJECTED_NAME


@dataclass(frozen=True)
class StepRecord:
    """One pipeline step as it happened: its Prefect state name (e.g. Cached) and wall time."""

    name: str
    state: str
    seconds: float


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
    cost: tuple[str, ...] = ()  # the estimate's lines (`core.cost`), or the local note
    serving_note: str = ""  # what became of the server (kept, stopped, not promoted: why)


LOCAL_COST = "local: no cloud cost"
# The steps during which the candidate service's instance runs for this run: from the deploy's
# first request until the smoke test's answer.
SERVING_STEPS = ("deploy", "smoke")


def serving_seconds(steps: Sequence[StepRecord]) -> float:
    """Wall time of the steps that kept the new server's instance up (a lower bound of its
    billed time: Cloud Run keeps an idle instance a while before it scales to zero)."""
    return sum(step.seconds for step in steps if step.name in SERVING_STEPS)


BASE_PREFIX = "base_"  # the job scores the base model on the same held-out rows as `base_<name>`


def _format_value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluation_table(metrics: Mapping[str, object]) -> list[str]:
    """Base and tuned side by side, one metric a row (`—` where the base has no score)."""
    tuned = sorted(name for name in metrics if not name.startswith(BASE_PREFIX))
    return [
        "| metric | base model | tuned model |",
        "|---|---|---|",
        *(
            f"| {name} | {_format_value(metrics.get(BASE_PREFIX + name, '—'))} "
            f"| {_format_value(metrics[name])} |"
            for name in tuned
        ),
    ]


def lineage_table(lineage: Mapping[str, object]) -> list[str]:
    """Every input and every training setting that went into the lineage key."""
    rows = []
    for name, value in sorted(lineage.items()):
        if isinstance(value, Mapping):
            rows += [f"| {name}.{key} | `{_shown(item)}` |" for key, item in sorted(value.items())]
        else:
            rows.append(f"| {name} | `{value}` |")
    return ["| input or setting | value |", "|---|---|", *rows]


def _shown(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def render_report(
    *,
    lineage_key: str,
    model_uri: str,
    lineage: Mapping[str, object],
    metrics: Mapping[str, object],
    endpoint: str,
    served_model: str,
    prompt: str,
    answer: str,
    latency_s: float,
    steps: Sequence[StepRecord],
    serving_note: str,
    cost: Sequence[str] = (LOCAL_COST,),
) -> str:
    """Markdown: identity of the model, its quality, where it is served, how long each step
    took and what the run cost."""
    lines = [
        f"# Fine-tuned model `{lineage_key}`",
        "",
        f"- **Model folder:** `{model_uri}`",
        f"- **Endpoint:** `{endpoint}/v1/chat/completions` (model `{served_model}`)",
        f"- **Serving:** {serving_note}",
        "",
        "## Smoke test",
        "",
        f"> {prompt}",
        "",
        f"**Answer:** {answer}  ({latency_s:.2f} s)",
        "",
        "## Evaluation (held-out rows)",
        "",
        *evaluation_table(metrics),
        "",
        "## Steps",
        "",
        "| step | state | seconds |",
        "|---|---|---|",
        *(f"| {step.name} | {step.state} | {step.seconds:.1f} |" for step in steps),
        f"| **total** | | {sum(step.seconds for step in steps):.1f} |",
        "",
        "## Cost (estimate)",
        "",
        *(f"- {line}" for line in cost),
        "",
        "## Lineage",
        "",
        *lineage_table(lineage),
    ]
    return "\n".join(lines) + "\n"


def render_rejection(
    *,
    lineage_key: str,
    model_uri: str,
    lineage: Mapping[str, object],
    metrics: Mapping[str, object],
    problems: Sequence[str],
) -> str:
    """Markdown for a model the evaluation gate refused: why, and the numbers behind it."""
    lines = [
        f"# Rejected model `{lineage_key}`",
        "",
        f"- **Model folder:** `{model_uri}` (marked `{REJECTED_NAME}`; never served)",
        "- **Serving:** unchanged — the previous model, if any, keeps serving",
        "",
        "## Why the evaluation gate refused it",
        "",
        *(f"- {problem}" for problem in problems),
        "",
        "## Evaluation (held-out rows)",
        "",
        *evaluation_table(metrics),
        "",
        "## Lineage",
        "",
        *lineage_table(lineage),
    ]
    return "\n".join(lines) + "\n"
