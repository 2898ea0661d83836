"""What both job runners check first: is a complete model for this key already in the store?

The manifest is written last, so its lineage key is the seal of a finished training run; the
check against the store (not a cache) is what keeps a rerun from training twice.
"""

from __future__ import annotations

import json

from core.contracts import ArtifactStore, JobOutcome, LogCallback, TrainJobSpec
from core.rejection import rejection_of


def sealed_lineage_key(store: ArtifactStore, prefix: str) -> str | None:
    """The lineage key sealed in `prefix/MANIFEST.json`; None when the folder is incomplete."""
    try:
        manifest = json.loads(store.read_bytes(f"{prefix}/MANIFEST.json"))
    except (FileNotFoundError, ValueError):
        return None
    key = manifest.get("lineage_key") if isinstance(manifest, dict) else None
    return key if isinstance(key, str) else None


def reuse_sealed_model(
    store: ArtifactStore, spec: TrainJobSpec, on_log: LogCallback
) -> JobOutcome | None:
    """The outcome of a run that finds its model already complete, or None if it must train."""
    if sealed_lineage_key(store, spec.output_prefix) != spec.lineage_key:
        return None
    output_uri = store.uri_for(spec.output_prefix)
    on_log(f"complete model already in the store at {output_uri}; nothing to train")
    rejected = rejection_of(store, spec.output_prefix)
    if rejected:
        on_log(
            f"note: this model was REJECTED by the evaluation gate on {rejected.get('rejected_at')}"
            f" ({'; '.join(rejected.get('problems', []))}); verify judges it again"
        )
    return JobOutcome(spec.lineage_key, output_uri, "existing", 0.0, reused=True)
