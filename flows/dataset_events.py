"""Retrain on GCS events: pull the dataset bucket's notifications and emit one
`emoji-finetune.dataset.changed` per new generation of a dataset object.

Prefect 3 OSS has no webhooks, so outside events come in through this process: a long-running
flow (the `dataset-events` deployment) that pulls the Pub/Sub subscription `bootstrap`
created. The event carries the object's generation as `new_revision`; the pipeline
deployment's trigger starts one run training exactly that generation. Pub/Sub delivers at
least once and unordered: the last generation acted on is a Prefect variable (shared with the
polling watcher), a message not above it is acked and ignored, and a message is acked only
after its event is emitted — a crash in between redelivers it rather than losing it.

    python -m flows.dataset_events [--max-idle-s S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from prefect import flow, get_run_logger
from prefect.events import emit_event
from prefect.variables import Variable
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.dataset_events import DatasetUpload, is_newer, upload_from_notification
from core.dataset_watch import EVENT_NAME, resource_id, state_variable_name
from flows.wiring import build_dataset_subscription

PULL_BATCH = 100
PULL_WAIT_S = 2.0


class DatasetEventSettings(BaseSettings):
    """Where dataset notifications flow (`PIPELINE_EVENTS__*`); bootstrap creates them."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_EVENTS__",
        env_file=os.environ.get("PIPELINE_ENV_FILE", ".env"),
        extra="ignore",
    )

    project: str | None = Field(None, description="Project of the topic and subscription.")
    bucket: str | None = Field(None, description="Bucket holding the dataset objects.")
    prefix: str = Field("", description="Only objects under this prefix are announced.")
    topic: str = Field("emoji-dataset-events", description="Topic GCS publishes to.")
    subscription: str = Field("emoji-dataset-events", description="Subscription pulled here.")


def announce(upload: DatasetUpload) -> bool:
    """Emit the change unless this generation is not newer than the last one acted on."""
    variable = state_variable_name(upload.dataset)
    previous = Variable.get(variable, default=None)
    logger = get_run_logger()
    if not is_newer(upload.generation, previous):
        logger.info("%s#%s: not above %s, ignored", upload.dataset, upload.generation, previous)
        return False
    emit_event(
        event=EVENT_NAME,
        resource={
            "prefect.resource.id": resource_id(upload.dataset),
            "prefect.resource.name": upload.dataset,
        },
        payload={
            "dataset": upload.dataset,
            "old_revision": previous,
            "new_revision": upload.generation,
        },
    )
    Variable.set(variable, upload.generation, overwrite=True)
    logger.info("%s: new generation %s announced", upload.dataset, upload.generation)
    return True


@flow(name="dataset-events", log_prints=True)
def subscribe_dataset_events(max_idle_s: float | None = None) -> list[str]:
    """Pull GCS notifications and emit one event per new dataset generation.

    Args:
        max_idle_s: Return after this long without a message; unset = run until stopped.
    """
    config = DatasetEventSettings()
    if not config.project:
        raise ValueError("set PIPELINE_EVENTS__PROJECT to the project of the subscription")
    subscription = build_dataset_subscription(config.project, config.subscription)
    announced: list[str] = []
    idle_since = time.monotonic()
    try:
        while max_idle_s is None or time.monotonic() - idle_since < max_idle_s:
            messages = subscription.pull(PULL_BATCH, PULL_WAIT_S)
            if not messages:
                continue
            idle_since = time.monotonic()
            uploads = [u for m in messages if (u := upload_from_notification(m.attributes))]
            for upload in sorted(uploads, key=lambda u: (u.dataset, int(u.generation))):
                if announce(upload):
                    announced.append(f"{upload.dataset}#{upload.generation}")
            subscription.ack([m.ack_id for m in messages])
    finally:
        subscription.close()
    return announced


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.dataset_events", description=__doc__)
    parser.add_argument("--max-idle-s", type=float, help="stop after this long without news")
    args = parser.parse_args(argv)
    for announced in subscribe_dataset_events(args.max_idle_s):
        print(f"announced {announced}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
