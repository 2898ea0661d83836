"""GCS notification → dataset upload rules: which messages count, and which are news."""

from __future__ import annotations

import pytest

from core.dataset_events import is_newer, split_gcs_uri, upload_from_notification

FINALIZED = {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "d/x.jsonl",
             "objectGeneration": "1700000000000002"}  # fmt: skip


def test_a_finalized_dataset_object_is_an_upload_of_that_generation() -> None:
    upload = upload_from_notification(FINALIZED)
    assert upload is not None
    assert (upload.dataset, upload.generation) == ("gs://b/d/x.jsonl", "1700000000000002")


@pytest.mark.parametrize(
    "change",
    [{"eventType": "OBJECT_DELETE"}, {"objectId": "d/model.bin"}, {"objectGeneration": "x"}],
)
def test_other_events_and_objects_are_not_uploads(change: dict[str, str]) -> None:
    assert upload_from_notification({**FINALIZED, **change}) is None


def test_only_a_higher_generation_is_news() -> None:
    assert is_newer("5", None)
    assert is_newer("12", "9")  # numbers, not strings
    assert not is_newer("9", "9")  # a redelivery
    assert not is_newer("8", "9")  # an older upload arriving late


def test_gcs_uris_split_or_name_the_fix() -> None:
    assert split_gcs_uri("gs://b/d/x.csv") == ("b", "d/x.csv")
    with pytest.raises(ValueError, match="gs://BUCKET/PATH"):
        split_gcs_uri("gs://bucket-only")
