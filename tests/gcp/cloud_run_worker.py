"""What the `emoji-cloud-run` pool's cloud-run-v2 worker does with a flow run, for the tests.

The worker's own configuration class renders the job body (pool template + the deployment's
job variables + `prepare_for_flow_run`), and the worker's own `JobV2.create` submits it to
Cloud Run v2 — here the fake's, which validates it against Google's discovery document. Shared
by the orchestrator test and the whole-path test, so both exercise exactly what the worker runs;
with the two readers of a run's outcome they and the pipeline test share (traffic, progress).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from prefect.client.orchestration import get_client
from prefect_gcp.models.cloud_run_v2 import JobV2
from prefect_gcp.workers.cloud_run_v2 import CloudRunWorkerJobV2Configuration

from deployments.bootstrap import CLOUD_RUN_POOL
from tests.fakes.gcp_world import FakeGoogleCloud

DEPLOYMENT = "emoji-finetune/cloud-run"


async def worker_configuration(
    flow_run_id: UUID | None = None,
) -> CloudRunWorkerJobV2Configuration:
    """The worker's configuration for a run of the deployment (a new one unless given)."""
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        if flow_run_id is None:
            flow_run = await client.create_flow_run_from_deployment(deployment.id)
        else:
            flow_run = await client.read_flow_run(flow_run_id)
        pool = await client.read_work_pool(CLOUD_RUN_POOL)
        return await CloudRunWorkerJobV2Configuration.resolve_for_flow_run(
            flow_run, client=client, work_pool=pool, worker_name="test", deployment=deployment
        )


def submit_like_the_worker(world: FakeGoogleCloud, config: Any) -> dict[str, Any]:
    """prefect-gcp's `JobV2.create` through the client its worker builds, at the fake."""
    locations = (
        discovery.build(
            "run",
            "v2",
            client_options=ClientOptions(api_endpoint=world.url),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        .projects()
        .locations()
    )
    return JobV2.create(  # type: ignore[no-any-return]
        cr_client=locations,
        project=config.project,
        location=config.region,
        job_id=config.job_name,
        body=config.job_body,
    )


def submitted_container(world: FakeGoogleCloud, config: Any) -> dict[str, Any]:
    """The one container of the job the worker created in Cloud Run (the fake's copy)."""
    location = f"projects/{world.project}/locations/{world.names.region}"
    job = world.fake.resource(f"{location}/jobs/{config.job_name}")
    (container,) = job["template"]["template"]["containers"]
    return container  # type: ignore[no-any-return]


def service_traffic(world: FakeGoogleCloud) -> list[tuple[str, int]]:
    """The Cloud Run service's traffic split: (revision, percent) per entry."""
    service = world.fake.resource(world.names.service)
    return [(t.get("revision", ""), int(t.get("percent", 0))) for t in service["traffic"]]


def training_progress(lineage_key: str) -> list[object]:
    """The value of each `training-<key>` progress artifact."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    return [a.data for a in artifacts if a.key == f"training-{lineage_key}"]
