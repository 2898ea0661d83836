"""Bootstrap of retraining on GCS events: the Pub/Sub topic, its subscription, and the
bucket's notification config (finalize events under the prefix → the topic). Run once by an
admin through `bootstrap` when `PIPELINE_EVENTS__PROJECT` is set; idempotent."""

from __future__ import annotations

from flows.dataset_events import DatasetEventSettings
from tasks.backends.gcp import events


def ensure_dataset_events(config: DatasetEventSettings) -> dict[str, str]:
    """topic → subscription → notification (the last only when a bucket is configured)."""
    project = config.project or ""
    outcomes = {
        f"pubsub topic {config.topic}": events.ensure_topic(project, config.topic),
        f"pubsub subscription {config.subscription}": events.ensure_subscription(
            project, config.topic, config.subscription
        ),
    }
    if config.bucket:
        from google.cloud import storage

        outcomes[f"notification gs://{config.bucket}/{config.prefix}"] = (
            events.ensure_notification(
                storage.Client(project=project), config.bucket, project, config.topic,
                config.prefix,
            )
        )  # fmt: skip
    return outcomes
