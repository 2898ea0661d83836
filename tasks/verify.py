"""Verify: a model folder that fails any check, or the evaluation gate, is never served."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger, task

from core.contracts import Backend, VerificationFailed
from core.integrity import MANIFEST_NAME
from core.quality_gate import QualityThresholds, quality_problems
from core.rejection import mark_rejected, rejection_of
from core.verification import VerifiedModel, manifest_digest, verify_model
from tasks.policy import CACHED_TASK_OPTIONS, Parameters, world_checked
from tasks.report import publish_rejection


def _judged(parameters: Parameters) -> tuple[str, str, str]:
    """The folder's bytes (the manifest lists every file's sha256), the prompt and the gate's
    thresholds: changing any of them judges the model again."""
    backend: Backend = parameters["backend"]
    digest = manifest_digest(backend.store, parameters["prefix"]) or "absent"
    judged_by = json.dumps([parameters["prompt"], dict(parameters["quality"])], sort_keys=True)
    return parameters["lineage_key"], digest, judged_by


def _manifest_present(parameters: Parameters) -> bool:
    backend: Backend = parameters["backend"]
    return manifest_digest(backend.store, parameters["prefix"]) is not None


verified_model_key = world_checked("verify", _judged, _manifest_present)


@task(name="verify", cache_key_fn=verified_model_key, **CACHED_TASK_OPTIONS)
def verify(
    backend: Backend, prefix: str, lineage_key: str, prompt: str, quality: Mapping[str, Any]
) -> VerifiedModel:
    """Integrity checks, then the quality gate on the manifest's held-out metrics.

    A model the gate refuses is marked (`REJECTED.json`) and still reported — metrics beside
    the base model's and every reason — before the run fails, so it is seen, never served.
    """
    verified = verify_model(
        backend.store, prefix, expected_lineage_key=lineage_key, generation_prompt=prompt
    )
    logger = get_run_logger()
    logger.info(
        "verified %s: %d tensors, %d parameters, %.1f MB; sample answer %r",
        verified.uri,
        verified.tensor_count,
        verified.parameter_count,
        verified.total_bytes / 1e6,
        verified.sample_answer,
    )
    problems = quality_problems(verified.metrics, QualityThresholds(**quality))
    if problems:
        marker = mark_rejected(backend.store, prefix, problems, verified.metrics, quality)
        logger.error("quality gate refused %s (marked %s)", verified.uri, marker)
        manifest = json.loads(backend.store.read_bytes(f"{prefix}/{MANIFEST_NAME}"))
        lineage = manifest.get("lineage", {}) if isinstance(manifest, dict) else {}
        publish_rejection(lineage_key, verified.uri, lineage, verified.metrics, problems)
        raise VerificationFailed(verified.uri, problems)
    earlier = rejection_of(backend.store, prefix)
    if earlier:
        logger.warning(
            "%s was rejected on %s under other thresholds (%s); it passes the current gate",
            verified.uri,
            earlier.get("rejected_at"),
            "; ".join(earlier.get("problems", [])),
        )
    logger.info("quality gate passed: %s", _scores(verified.metrics))
    return verified


def _scores(metrics: Mapping[str, float]) -> str:
    """`eval_loss=0.41 (base 2.3), emoji_only_rate=0.98 (base 0.12), …` for the run log."""
    shown = ("eval_loss", "emoji_only_rate", "emoji_f1", "exact_match")
    return ", ".join(
        f"{name}={metrics[name]:.3g} (base {metrics.get('base_' + name, float('nan')):.3g})"
        for name in shown
        if name in metrics
    )
