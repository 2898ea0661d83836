"""Verify: a model folder that fails any check is never served."""

from __future__ import annotations

from prefect import get_run_logger, task

from core.verification import VerifiedModel, verify_model
from tasks.backends.base import ArtifactStore
from tasks.policy import CACHED_TASK_OPTIONS


@task(name="verify", **CACHED_TASK_OPTIONS)
def verify(
    store: ArtifactStore, prefix: str, lineage_key: str, prompt: str, cache_key: str
) -> VerifiedModel:
    """Cached on the manifest's hash: a rewritten folder is verified again."""
    verified = verify_model(
        store, prefix, expected_lineage_key=lineage_key, generation_prompt=prompt
    )
    get_run_logger().info(
        "verified %s: %d tensors, %d parameters, %.1f MB; sample answer %r",
        verified.uri,
        verified.tensor_count,
        verified.parameter_count,
        verified.total_bytes / 1e6,
        verified.sample_answer,
    )
    return verified
