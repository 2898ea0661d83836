"""Dataset events on Google Cloud: a GCS notification on the dataset's bucket publishes every
finalized object to a Pub/Sub topic, and the subscriber pulls its subscription.

`ensure_*` are get → create if absent (bootstrap runs them once, as an admin). Pub/Sub clients
honour `PUBSUB_EMULATOR_HOST`, so the tests run these exact calls against the real emulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, storage

from core.contracts import ConfigurationError
from core.dataset_events import split_gcs_uri

PUBLISHER_ROLE = "roles/pubsub.publisher"
ACK_DEADLINE_S = 60


@dataclass(frozen=True)
class Notification:
    """One pulled message: what to ack, and the GCS notification's attributes."""

    ack_id: str
    attributes: Mapping[str, str]


class DatasetSubscription:
    """Synchronous pulls from one subscription; messages are acked only once handled."""

    def __init__(self, project: str, subscription: str) -> None:
        self.client = pubsub_v1.SubscriberClient()
        self.path = self.client.subscription_path(project, subscription)

    def pull(self, max_messages: int, timeout_s: float) -> list[Notification]:
        """Waits up to `timeout_s` for messages; [] when none came."""
        try:
            response = self.client.pull(
                subscription=self.path, max_messages=max_messages, timeout=timeout_s
            )
        except gexc.DeadlineExceeded:
            return []
        return [
            Notification(m.ack_id, dict(m.message.attributes)) for m in response.received_messages
        ]

    def ack(self, ack_ids: Sequence[str]) -> None:
        if ack_ids:
            self.client.acknowledge(subscription=self.path, ack_ids=list(ack_ids))

    def close(self) -> None:
        self.client.close()


def ensure_topic(project: str, topic: str) -> str:
    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic)
    try:
        publisher.get_topic(topic=path)
        return "unchanged"
    except gexc.NotFound:
        pass
    try:
        publisher.create_topic(name=path)
    except gexc.AlreadyExists:  # created meanwhile
        return "unchanged"
    return "created"


def ensure_subscription(project: str, topic: str, subscription: str) -> str:
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, subscription)
    try:
        subscriber.get_subscription(subscription=path)
        return "unchanged"
    except gexc.NotFound:
        pass
    try:
        subscriber.create_subscription(
            name=path,
            topic=pubsub_v1.PublisherClient.topic_path(project, topic),
            ack_deadline_seconds=ACK_DEADLINE_S,
        )
    except gexc.AlreadyExists:
        return "unchanged"
    return "created"


def ensure_notification(
    client: storage.Client, bucket: str, project: str, topic: str, prefix: str
) -> str:
    """Finalize events of `bucket` (under `prefix`) → the topic; GCS's service agent gets
    publisher on the topic first (the JSON API, unlike gsutil, does not grant it)."""
    found = client.bucket(bucket).list_notifications()
    if any(n.topic_name == topic and (n.blob_name_prefix or "") == prefix for n in found):
        return "unchanged"
    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic)
    policy = publisher.get_iam_policy(request={"resource": path})
    member = f"serviceAccount:{client.get_service_account_email(project=project)}"
    if not any(b.role == PUBLISHER_ROLE and member in b.members for b in policy.bindings):
        policy.bindings.add(role=PUBLISHER_ROLE, members=[member])
        publisher.set_iam_policy(request={"resource": path, "policy": policy})
    client.bucket(bucket).notification(
        topic_name=topic,
        topic_project=project,
        event_types=["OBJECT_FINALIZE"],
        blob_name_prefix=prefix or None,
        payload_format="JSON_API_V1",
    ).create()
    return "created"


def object_generation(client: storage.Client, bucket: str, path: str) -> str | None:
    """The live generation of `gs://bucket/path`; None when there is no such object."""
    blob = client.bucket(bucket).get_blob(path)
    return None if blob is None else str(blob.generation)


def pinned_generation(client: storage.Client, uri: str, requested: str | None) -> str:
    """The generation a run trains on: the requested one (from the event) when it exists,
    else the object's live generation. Raises ConfigurationError naming the setting."""
    bucket_name, path = split_gcs_uri(uri)
    bucket = client.bucket(bucket_name)
    try:
        if requested is not None:
            if not requested.isdigit() or bucket.get_blob(path, generation=int(requested)) is None:
                raise ConfigurationError(
                    f"data.revision: {uri} has no generation {requested!r}; pass a generation "
                    "the bucket keeps (object versioning) or leave data.revision unset"
                )
            return requested
        live = object_generation(client, bucket_name, path)
    except gexc.GoogleAPICallError as error:
        raise ConfigurationError(f"data.dataset: cannot read {uri} ({error.message})") from None
    if live is None:
        raise ConfigurationError(f"data.dataset: {uri} does not exist; upload it or fix the path")
    return live
