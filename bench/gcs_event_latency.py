"""Benchmark (not a test): GCS upload → pipeline flow run created, through the real path.

Both real emulators (fake-gcs-server publishing notifications to gcloud's Pub/Sub emulator),
a real `prefect server`, the pipeline deployment with `prefect.yaml`'s trigger, and the
subscriber (`python -m flows.dataset_events`) running as its own process. Each sample uploads
a new generation and waits for the run the trigger creates; latency = the run's `created`
time minus the moment the upload returned. Prints a Markdown table (median of 5).

    PYTHONPATH=. python bench/gcs_event_latency.py [--samples 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.events import ensure_dataset_events
from flows.dataset_events import DatasetEventSettings
from flows.finetune import finetune_pipeline
from tests.flow.prefect_server import running_server
from tests.gcp.events_world import notifying_gcs, pubsub_emulator
from tests.gcp.test_dataset_events import pipeline_trigger

PROJECT, BUCKET, OBJECT = "emoji-bench", "emoji-bench-data", "data/text2emoji.jsonl"
RUN_DEADLINE_S = 60


def runs_created() -> list[datetime]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["emoji-finetune"]))
        )
    return sorted(run.created for run in runs if run.created is not None)


def sample(bucket: storage.Bucket, index: int, known: int) -> float:
    blob = bucket.blob(OBJECT)
    blob.upload_from_string(f'{{"text": "row {index}", "emoji": "🍌", "topic": "food"}}\n')
    uploaded = datetime.now(UTC)
    deadline = time.monotonic() + RUN_DEADLINE_S
    while len(created := runs_created()) <= known:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no flow run within {RUN_DEADLINE_S} s of upload {index}")
        time.sleep(0.05)
    return (created[-1] - uploaded).total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="gcs-event-bench-"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with pubsub_emulator(root / "pubsub.log") as pubsub_host:
        os.environ.update(PUBSUB_EMULATOR_HOST=pubsub_host, PIPELINE_EVENTS__PROJECT=PROJECT)
        config = DatasetEventSettings()
        ensure_dataset_events(config)
        with (
            running_server(root / "home", root / "server.log") as (api_url, env),
            temporary_settings(updates={PREFECT_API_URL: api_url}),
            notifying_gcs(pubsub_host, PROJECT, config.topic, root / "gcs.log") as gcs_url,
        ):
            finetune_pipeline.to_deployment("local", triggers=[pipeline_trigger()]).apply()
            subscriber = subprocess.Popen(
                [sys.executable, "-m", "flows.dataset_events"],
                env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                stderr=(root / "subscriber.log").open("w"), start_new_session=True,
            )  # fmt: skip
            try:
                client = storage.Client(
                    project=PROJECT,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": gcs_url},
                )
                bucket = client.create_bucket(BUCKET)
                sample(bucket, 0, len(runs_created()))  # warm-up: the subscriber's first pull
                latencies = [sample(bucket, i, len(runs_created())) for i in range(args.samples)]
            finally:
                subscriber.send_signal(2)
                subscriber.wait(timeout=30)
    print("| upload → flow run created | seconds |")
    print("|---|---|")
    for index, seconds in enumerate(latencies, 1):
        print(f"| upload {index} | {seconds:.2f} |")
    print(f"| **median of {len(latencies)}** | **{statistics.median(latencies):.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
