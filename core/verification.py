"""Verify a trained model folder before anything serves it.

A folder under `models/<lineage-key>/` is only served when it proves it is complete, intact
and really the merged model the lineage promises. All problems are collected and raised
together, so an operator fixes a broken training job in one round trip instead of one error
at a time. What runs where:

- always, any store, no torch (`core.integrity`): manifest, sizes and sha256s, required
  files, weight files, safetensors headers;
- the architecture check: where torch and transformers are installed, the full comparison
  with a meta-device model built from config.json (`core.model_check`); elsewhere (the gcp
  orchestrator's image) the torch-free subset that config.json's fields allow;
- finiteness and a short generation (`core.model_check`): only where torch is installed and
  the store has the folder on a local disk (`local_dir`), since they load tensor data.

Importing this module never imports torch: `core.model_check` is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from core.contracts import ArtifactStore, VerificationFailed
from core.integrity import (
    CONFIG_NAME,
    MANIFEST_NAME,
    MISSING_MANIFEST,
    IntegrityFindings,
    check_integrity,
    clean,
    config_field_problems,
    join,
    manifest_digest,
)

__all__ = ["MANIFEST_NAME", "VerifiedModel", "manifest_digest", "verify_model"]


@dataclass(frozen=True)
class VerifiedModel:
    """A model folder that passed every check; small and picklable (a Prefect task result)."""

    prefix: str
    uri: str
    lineage_key: str
    manifest_sha256: str
    metrics: Mapping[str, float]
    total_bytes: int
    tensor_count: int
    parameter_count: int
    sample_answer: str | None  # from the load-and-generate check (None when not run)


def verify_model(
    store: ArtifactStore,
    prefix: str,
    *,
    expected_lineage_key: str,
    check_generation: bool = True,
    generation_prompt: str,
) -> VerifiedModel:
    """Run every check that applies to `prefix` and return what was proven.

    `generation_prompt` is the one the smoke test sends (the caller's setting), so verify and
    smoke judge the model on the same question. Raise VerificationFailed(store.uri_for(prefix),
    problems) listing EVERY problem found (not just the first) when any check fails.
    """
    prefix = clean(prefix)
    location = store.uri_for(prefix)
    listing = store.list_files(prefix)
    if not listing:
        raise VerificationFailed(location, [f"no files under {location}", MISSING_MANIFEST])

    found = check_integrity(store, prefix, listing, expected_lineage_key)
    with_torch = _torch_installed()
    if found.tensors is not None and CONFIG_NAME in listing:
        config_bytes = store.read_bytes(join(prefix, CONFIG_NAME))
        if with_torch:
            from core import model_check  # imports torch: only where it is installed

            found.problems.extend(model_check.architecture_problems(config_bytes, found.tensors))
        else:
            found.problems.extend(config_field_problems(config_bytes, found.tensors))
    folder = store.local_dir(prefix)
    sample: str | None = None
    if with_torch and folder is not None and found.tensors is not None:
        sample = _tensor_data_checks(folder, found, check_generation, generation_prompt)

    if found.problems or found.manifest is None or found.tensors is None:
        raise VerificationFailed(location, found.problems or ["verification incomplete"])
    return VerifiedModel(
        prefix=prefix,
        uri=location,
        lineage_key=found.manifest.lineage_key,
        manifest_sha256=found.manifest_sha256,
        metrics=dict(found.manifest.metrics),
        total_bytes=sum(listing.values()),
        tensor_count=len(found.tensors),
        parameter_count=sum(info.numel for info in found.tensors.values()),
        sample_answer=sample,
    )


def _tensor_data_checks(
    folder: Path, found: IntegrityFindings, check_generation: bool, prompt: str
) -> str | None:
    """Finiteness, then (if all else passed) a generation; the sample answer, if one ran.

    Both load tensor data, so the caller runs them only with the folder on a local disk and
    torch installed.
    """
    from core import model_check  # imports torch: only where it is installed

    found.problems.extend(model_check.finite_problems(folder, found.weight_files))
    if check_generation and not found.problems:
        return model_check.sample_answer(folder, prompt, found.problems)
    return None


def _torch_installed() -> bool:
    """Whether the torch checks can run here, found without importing either package."""
    return find_spec("torch") is not None and find_spec("transformers") is not None
