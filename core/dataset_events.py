"""GCS object notifications → dataset changes: pure rules, testable without Pub/Sub or Prefect.

A dataset at `gs://bucket/path.jsonl` (or `.csv`) is addressed by the object's *generation*,
which GCS raises on every overwrite, so "newer" is a number comparison. Pub/Sub delivers at
least once and in no guaranteed order: a message whose generation is not above the last one
acted on (a redelivery, or an older upload arriving late) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.revisions import DATA_SUFFIXES

GCS_SCHEME = "gs://"
FINALIZE = "OBJECT_FINALIZE"


@dataclass(frozen=True)
class DatasetUpload:
    """A new generation of a dataset object, as its notification announced it."""

    dataset: str
    generation: str


def is_gcs_uri(value: str) -> bool:
    return value.startswith(GCS_SCHEME)


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/path` → (bucket, path); raises ValueError naming the fix."""
    bucket, _, path = uri.removeprefix(GCS_SCHEME).partition("/")
    if not is_gcs_uri(uri) or not bucket or not path or path.endswith("/"):
        raise ValueError(f"{uri!r} is not gs://BUCKET/PATH.jsonl (or .csv)")
    return bucket, path


def upload_from_notification(attributes: Mapping[str, str]) -> DatasetUpload | None:
    """The upload a GCS notification (JSON_API_V1 attributes) announces, if it is one of a
    dataset file; None for deletes, metadata updates and other objects."""
    if attributes.get("eventType") != FINALIZE:
        return None
    bucket, name = attributes.get("bucketId", ""), attributes.get("objectId", "")
    generation = attributes.get("objectGeneration", "")
    if not (bucket and name.endswith(DATA_SUFFIXES) and generation.isdigit()):
        return None
    return DatasetUpload(f"{GCS_SCHEME}{bucket}/{name}", generation)


def is_newer(generation: str, last_seen: str | None) -> bool:
    """Act on an upload only when its generation is above the last one acted on."""
    return last_seen is None or not last_seen.isdigit() or int(generation) > int(last_seen)
