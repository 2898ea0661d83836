"""The run report: a Markdown artifact an operator opens in the Prefect UI after a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prefect.artifacts import create_markdown_artifact

from core.contracts import Endpoint
from core.lineage import Lineage
from core.report import StepRecord, render_rejection, render_report
from core.smoke import SmokeResult
from core.verification import VerifiedModel

REPORT_KEY = "finetune-report"


def publish_report(
    lineage: Lineage,
    verified: VerifiedModel,
    endpoint: Endpoint,
    smoke: SmokeResult,
    steps: Sequence[StepRecord],
    serving_note: str,
    cost: Sequence[str],
) -> None:
    """One artifact per run under a fixed key, so the UI shows the latest beside its history."""
    markdown = render_report(
        lineage_key=lineage.key,
        model_uri=verified.uri,
        lineage=lineage.as_dict(),
        metrics=verified.metrics,
        endpoint=endpoint.base_url,
        served_model=endpoint.model,
        prompt=smoke.prompt,
        answer=smoke.answer,
        latency_s=smoke.latency_s,
        steps=steps,
        serving_note=serving_note,
        cost=cost,
    )
    create_markdown_artifact(markdown, key=REPORT_KEY, description=f"model {lineage.key}")


def publish_rejection(
    lineage_key: str,
    model_uri: str,
    lineage: Mapping[str, object],
    metrics: Mapping[str, float],
    problems: Sequence[str],
) -> None:
    """The same artifact key as a served model's report, so the run page always has one."""
    markdown = render_rejection(
        lineage_key=lineage_key,
        model_uri=model_uri,
        lineage=lineage,
        metrics=metrics,
        problems=problems,
    )
    create_markdown_artifact(
        markdown, key=REPORT_KEY, description=f"model {lineage_key} REJECTED by the gate"
    )
