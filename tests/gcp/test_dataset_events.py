"""Retraining on GCS events, with both real emulators and a real `prefect server`.

An upload to fake-gcs-server publishes a GCS notification to the Pub/Sub emulator; the
subscriber flow pulls it and emits `emoji-finetune.dataset.changed`; the pipeline deployment,
registered with the exact trigger of `prefect.yaml`, creates one run per new generation. No
worker runs: the tests assert the runs the trigger created and the generation each carries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.events import DeploymentEventTrigger
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.bootstrap import bootstrap
from flows.dataset_events import subscribe_dataset_events
from flows.finetune import finetune_pipeline
from tests.conftest import REPO_ROOT
from tests.flow.prefect_server import running_server
from tests.gcp.events_world import notifying_gcs, pubsub_emulator

PROJECT, TOPIC, BUCKET = "emoji-events-test", "emoji-dataset-events", "emoji-datasets"
DATASET = "data/text2emoji.jsonl"
IDLE_S = 4.0  # the subscriber returns after this long without a message


@dataclass(frozen=True)
class World:
    bucket: storage.Bucket
    publisher: pubsub_v1.PublisherClient


def pipeline_trigger() -> DeploymentEventTrigger:
    """The trigger exactly as `prefect.yaml` defines it for the pipeline deployments."""
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["definitions"]
    return DeploymentEventTrigger(**spec["dataset_changed"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("events")
    patch = pytest.MonkeyPatch()
    with pubsub_emulator(logs / "pubsub.log") as pubsub_host:
        patch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
        patch.setenv("PIPELINE_EVENTS__PROJECT", PROJECT)
        with (
            running_server(logs / "home", logs / "server.log") as (api_url, _),
            temporary_settings(updates={PREFECT_API_URL: api_url}),
        ):
            patch.setenv("PREFECT_API_URL", api_url)
            created = bootstrap()
            assert created["pubsub topic emoji-dataset-events"] == "created"
            assert created["pubsub subscription emoji-dataset-events"] == "created"
            again = bootstrap()
            assert again["pubsub topic emoji-dataset-events"] == "unchanged"
            finetune_pipeline.to_deployment("local", triggers=[pipeline_trigger()]).apply()
            with notifying_gcs(pubsub_host, PROJECT, TOPIC, logs / "gcs.log") as gcs_url:
                client = storage.Client(
                    project=PROJECT,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": gcs_url},
                )
                yield World(client.create_bucket(BUCKET), pubsub_v1.PublisherClient())
            EventsWorker.drain_all()
    patch.undo()


def upload(world: World, text: str) -> str:
    blob = world.bucket.blob(DATASET)
    blob.upload_from_string(text)
    return str(blob.generation)


def pipeline_runs() -> list[dict[str, Any]]:
    """Every pipeline run the trigger created, oldest first, as its settings.data."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["emoji-finetune"]))
        )
    ordered = sorted(runs, key=lambda run: run.created or run.expected_start_time)
    return [run.parameters["settings"]["data"] for run in ordered]


def wait_for_runs(count: int, deadline_s: float = 60) -> list[dict[str, Any]]:
    """Trigger actions run asynchronously on the server: poll until `count` runs exist."""
    deadline = time.monotonic() + deadline_s
    while len(runs := pipeline_runs()) < count and time.monotonic() < deadline:
        time.sleep(0.3)
    return runs


def test_uploads_trigger_one_run_per_generation_and_redeliveries_none(
    world: World,
) -> None:
    uri = f"gs://{BUCKET}/{DATASET}"
    first = upload(world, '{"text": "a", "emoji": "🍌", "topic": "food"}\n')

    assert subscribe_dataset_events(max_idle_s=IDLE_S) == [f"{uri}#{first}"]
    runs = wait_for_runs(1)
    assert runs == [{"dataset": uri, "revision": first}]

    second = upload(world, '{"text": "b", "emoji": "🍎", "topic": "food"}\n')
    third = upload(world, '{"text": "c", "emoji": "🍇", "topic": "food"}\n')
    # Announced in upload order. The runs' creation order is Prefect's: its actions service
    # runs two consumers, so two close events may create their runs in either order.
    assert subscribe_dataset_events(max_idle_s=IDLE_S) == [f"{uri}#{second}", f"{uri}#{third}"]
    runs = wait_for_runs(3)
    assert sorted(run["revision"] for run in runs) == sorted([first, second, third])
    assert all(run["dataset"] == uri for run in runs)

    # A redelivered notification and a late, older one: acked, and nothing new runs.
    topic = world.publisher.topic_path(PROJECT, TOPIC)
    for generation in (third, second):
        attributes = {
            "eventType": "OBJECT_FINALIZE",
            "payloadFormat": "JSON_API_V1",
            "bucketId": BUCKET,
            "objectId": DATASET,
            "objectGeneration": generation,
        }
        world.publisher.publish(topic, b"{}", **attributes).result()
    assert subscribe_dataset_events(max_idle_s=IDLE_S) == []
    EventsWorker.drain_all()
    time.sleep(3)  # room for a wrongly triggered run to appear
    assert len(pipeline_runs()) == 3
