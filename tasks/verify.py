"""Verify: a model folder that fails any check, or the evaluation gate, is never served."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger, task

from core.contracts import ArtifactStore, VerificationFailed
from core.quality_gate import QualityThresholds, quality_problems
from core.verification import VerifiedModel, verify_model
from tasks.policy import CACHED_TASK_OPTIONS


def verify_cache_key(lineage_key: str, manifest_sha256: str, quality: Mapping[str, Any]) -> str:
    """The folder's bytes and the gate's thresholds: changing either judges the model again."""
    thresholds = json.dumps(dict(quality), sort_keys=True).encode()
    return f"verify-{lineage_key}-{manifest_sha256}-{hashlib.sha256(thresholds).hexdigest()[:12]}"


@task(name="verify", **CACHED_TASK_OPTIONS)
def verify(
    store: ArtifactStore,
    prefix: str,
    lineage_key: str,
    prompt: str,
    quality: Mapping[str, Any],
    cache_key: str,
) -> VerifiedModel:
    """Integrity checks, then the quality gate on the manifest's held-out metrics."""
    verified = verify_model(
        store, prefix, expected_lineage_key=lineage_key, generation_prompt=prompt
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
        raise VerificationFailed(verified.uri, problems)
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
