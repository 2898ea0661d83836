"""The run report: what an operator opens in the Prefect UI after a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.contracts import Endpoint


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


def _format_value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
) -> str:
    """Markdown: identity of the model, its quality, where it is served, how long each step took."""
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
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {_format_value(value)} |" for name, value in sorted(metrics.items())),
        "",
        "## Steps",
        "",
        "| step | state | seconds |",
        "|---|---|---|",
        *(f"| {step.name} | {step.state} | {step.seconds:.1f} |" for step in steps),
        f"| **total** | | {sum(step.seconds for step in steps):.1f} |",
        "",
        "## Lineage",
        "",
        "| input | value |",
        "|---|---|",
        *(
            f"| {name} | `{value}` |"
            for name, value in sorted(lineage.items())
            if not isinstance(value, Mapping)
        ),
    ]
    return "\n".join(lines) + "\n"
