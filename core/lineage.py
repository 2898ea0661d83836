"""The lineage key: the address of one immutable model version in the store.

Everything that changes the trained weights goes into the key — base model and revision,
dataset and revision, sample size and seed, training hyperparameters, and the digest of the
training code — so `models/<key>/` is written once and a changed input trains a new version
instead of overwriting the one a live server reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

KEY_LENGTH = 16
MODELS_PREFIX = "models"


@dataclass(frozen=True)
class Lineage:
    """The inputs a model version is derived from (recorded verbatim in its manifest)."""

    base_model: str
    base_model_revision: str
    dataset: str
    dataset_revision: str
    sample_size: int
    eval_size: int
    seed: int
    training: Mapping[str, Any]
    code_digest: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace: the same inputs always serialise to the same bytes."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), default=list)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:KEY_LENGTH]

    @property
    def model_prefix(self) -> str:
        return model_prefix(self.key)


def model_prefix(lineage_key: str) -> str:
    """Store prefix of one model version."""
    return f"{MODELS_PREFIX}/{lineage_key}"
