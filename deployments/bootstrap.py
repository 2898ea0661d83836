"""Create (or update) what the deployments in `prefect.yaml` need, once, by an admin. Idempotent.

    python -m deployments.bootstrap [--gcp-project P --gcp-region R] [--results-bucket B]

* with `--gcp-project`: the Google side (`tasks/backends/gcp/bootstrap.py`) — APIs, the five
  service accounts (trainer, server, runner, invoker, builder), bucket, secret (its value from
  `$HF_TOKEN`), registry, the runner's custom role and every IAM binding. It needs an admin
  (Owner, or Service Usage Admin + Service Account Admin + Project IAM Admin + Role Admin +
  Storage Admin + Secret Manager Admin + Artifact Registry Admin); runs need none of that.

* `emoji-local` (process): runs the pipeline on the worker's machine (`local` backend).
* `emoji-cloud-run` (cloud-run-v2): runs the orchestrating flow on Cloud Run (CPU); the GPU
  work stays in the Cloud Run job the flow starts. Its base job template is
  `deployments/cloud-run-v2-base-job-template.json` filled from the `gcp` settings
  (`deployments/cloud_run_pool.py`). Bootstrap keeps the image the pool already runs;
  `python -m deployments.deploy_gcp` builds the orchestrator image and sets it.
* `gcs-bucket/emoji-finetune-results` (with `--results-bucket`): where the Cloud Run
  deployment keeps task results and cache records, since its containers are thrown away.
* `custom-webhook/emoji-finetune-alerts` + the `emoji-finetune-alerts` automation (when
  `PIPELINE_ALERTS__WEBHOOK_URL` is set): one message per failed or crashed run
  (`deployments/alerts.py`).
* the Pub/Sub topic + subscription of dataset events and the bucket's notification config
  (when `PIPELINE_EVENTS__PROJECT` is set; `deployments/events.py`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound

from core.contracts import PipelineError
from deployments.alerts import AlertSettings, ensure_alerts
from deployments.cloud_run_pool import RESULTS_BLOCK, cloud_run_template, template_image
from deployments.events import ensure_dataset_events
from flows.dataset_events import DatasetEventSettings
from flows.settings import SettingsError, load_settings
from tasks.backends.gcp.config import GcpSettings

if TYPE_CHECKING:  # prefect_gcp is imported only when a results block is asked for
    from prefect_gcp import GcsBucket

LOCAL_POOL = "emoji-local"
CLOUD_RUN_POOL = "emoji-cloud-run"


@dataclass(frozen=True)
class PoolSpec:
    name: str
    type: str
    base_job_template: dict[str, Any]
    description: str


def gcp_settings(project: str | None, region: str | None) -> GcpSettings:
    """The `gcp` settings of the environment (and `.env`), with the command's project/region."""
    given = {"project": project, "region": region}
    return load_settings(gcp={name: value for name, value in given.items() if value}).gcp


def cloud_run_pool(gcp: GcpSettings | None, image: str | None) -> PoolSpec:
    """The Cloud Run pool, its template filled from `gcp`, running `image` when given."""
    return PoolSpec(
        CLOUD_RUN_POOL,
        "cloud-run-v2",
        cloud_run_template(gcp, image),
        "Runs the emoji pipeline's orchestrating flow on Cloud Run (CPU).",
    )


def pool_specs(gcp: GcpSettings | None, image: str | None) -> list[PoolSpec]:
    return [
        PoolSpec(LOCAL_POOL, "process", {}, "Runs the emoji pipeline on the worker's machine."),
        cloud_run_pool(gcp, image),
    ]


def registered_image(client: SyncPrefectClient) -> str | None:
    """The orchestrator image the Cloud Run pool runs now (only deploy_gcp changes it)."""
    try:
        return template_image(client.read_work_pool(CLOUD_RUN_POOL).base_job_template)
    except ObjectNotFound:
        return None


def ensure_pool(client: SyncPrefectClient, spec: PoolSpec) -> str:
    """get → create if absent → update only what differs; returns what it did."""
    try:
        existing = client.read_work_pool(spec.name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(
                name=spec.name,
                type=spec.type,
                base_job_template=spec.base_job_template,
                description=spec.description,
            )
        )
        return "created"
    if spec.base_job_template and existing.base_job_template != spec.base_job_template:
        client.update_work_pool(spec.name, WorkPoolUpdate(base_job_template=spec.base_job_template))
        return "updated"
    return "unchanged"


def results_block() -> GcsBucket | None:
    """The `GcsBucket` block Cloud Run runs keep task results in, if it is registered."""
    from prefect_gcp import GcsBucket

    try:
        return GcsBucket.load(RESULTS_BLOCK)  # type: ignore[return-value]
    except ValueError:  # Prefect's "block not found"
        return None


def ensure_results_block(bucket: str) -> str:
    """The `GcsBucket` block for results; credentials come from the runtime (ADC on Cloud Run)."""
    from prefect_gcp import GcpCredentials, GcsBucket

    existing = results_block()
    if existing is not None and existing.bucket == bucket:
        return "unchanged"
    GcsBucket(bucket=bucket, gcp_credentials=GcpCredentials()).save(RESULTS_BLOCK, overwrite=True)
    return "created" if existing is None else "updated"


def ensure_gcp(project: str, region: str | None) -> dict[str, str]:
    """The admin's half of the Google rights (the per-run pipeline only checks it was done)."""
    from tasks.backends.gcp.backend import build_gcp_bootstrap

    report = build_gcp_bootstrap(gcp_settings(project, region)).ensure(on_log=print)
    done = f"created {', '.join(report.created)}" if report.created else "unchanged"
    return {f"gcp project {project}": done}


def bootstrap(
    project: str | None = None,
    region: str | None = None,
    results_bucket: str | None = None,
    pools_only: bool = False,
) -> dict[str, str]:
    """Every pool (and the results block when a bucket is given) → what was done to it.

    With a project, the admin's Google bootstrap runs first unless `pools_only` (an operator
    without admin rights registering the pools of a project an admin already bootstrapped).
    """
    outcomes = ensure_gcp(project, region) if project and not pools_only else {}
    gcp = gcp_settings(project, region)  # the project may also come from PIPELINE_GCP__PROJECT
    with get_client(sync_client=True) as client:
        for spec in pool_specs(gcp if gcp.project else None, registered_image(client)):
            outcomes[f"work pool {spec.name}"] = ensure_pool(client, spec)
    if results_bucket:
        outcomes[f"block gcs-bucket/{RESULTS_BLOCK}"] = ensure_results_block(results_bucket)
    dataset_events = DatasetEventSettings()
    if dataset_events.project:
        outcomes |= ensure_dataset_events(dataset_events)
    webhook_url = AlertSettings().webhook_url
    if webhook_url is not None:
        outcomes |= ensure_alerts(webhook_url.get_secret_value())
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.bootstrap", description=__doc__)
    parser.add_argument(
        "--gcp-project",
        help="bootstraps that Google project (accounts, roles, bucket, secret, registry) and "
        "fills the Cloud Run pool's template from the gcp settings",
    )
    parser.add_argument("--gcp-region", help="the region (default: PIPELINE_GCP__REGION)")
    parser.add_argument("--results-bucket", help="GCS bucket for task results (Cloud Run runs)")
    parser.add_argument(
        "--pools-only",
        action="store_true",
        help="only the work pools and Prefect blocks (fills the template with --gcp-project); "
        "skips the Google bootstrap, for operators of a project an admin bootstrapped",
    )
    args = parser.parse_args(argv)
    return run_and_report(
        lambda: bootstrap(args.gcp_project, args.gcp_region, args.results_bucket, args.pools_only)
    )


def run_and_report(ensure: Callable[[], dict[str, str]]) -> int:
    """The deployment commands' shell contract: one `name: outcome` line per thing ensured,
    exit 0; a bad setting or a refused step is one `error:` line and exit 2."""
    try:
        outcomes = ensure()
    except (SettingsError, PipelineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, outcome in outcomes.items():
        print(f"{name}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
