"""Put the `cloud-run` deployment on a bootstrapped project: image, work pool, deployment.

    python -m deployments.deploy_gcp [--gcp-project P] [--gcp-region R]     (make deploy-gcp)

Run by an operator (as the runner account: it may start builds and read the registry) against
the Prefect server in `PREFECT_API_URL`, after an admin ran `deployments.bootstrap --gcp-project
P` and `--results-bucket B` registered the results block. Idempotent:

1. checks first, building nothing: `gcp.project` is set, the Prefect API answers, the results
   block exists (each problem is one line naming the fix);
2. the orchestrator image (`deployments/orchestrator.Dockerfile`), built by the pipeline's
   builder through Cloud Build unless its content hash is already a tag in the registry;
3. the `emoji-cloud-run` pool, its template filled from the `gcp` settings and naming the image
   by digest (updated only when something differs);
4. `prefect --no-prompt deploy --name cloud-run`, so prefect.yaml stays the one definition of
   the deployment.

A rerun with unchanged code builds nothing and leaves the pool as it is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from core.contracts import ConfigurationError, ImageBuilder, ImageRef
from deployments.bootstrap import (
    cloud_run_pool,
    ensure_pool,
    gcp_settings,
    results_block,
    run_and_report,
)
from deployments.cloud_run_pool import ORCHESTRATOR_IMAGE, RESULTS_BLOCK
from deployments.orchestrator_image import REPO_ROOT, orchestrator_context
from flows.settings import how_to_set
from tasks.backends.gcp.backend import build_gcp_image_builder
from tasks.backends.gcp.config import GcpSettings

DEPLOYMENT = "cloud-run"
DEPLOY_TIMEOUT_S = 300


def check_prefect() -> str:
    """The Prefect API this deploys to; an unset URL would deploy to a throwaway server."""
    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: start `make server` (or point it at your Prefect "
            "server) and rerun"
        )
    with get_client(sync_client=True) as client:
        if client.api_healthcheck() is not None:
            raise ConfigurationError(
                f"the Prefect API at {api_url} does not answer: start it or fix PREFECT_API_URL"
            )
    return str(api_url)


def check_results_block() -> None:
    """Cloud Run runs keep task results in the GcsBucket block bootstrap registers."""
    if results_block() is None:
        raise ConfigurationError(
            f"block gcs-bucket/{RESULTS_BLOCK} is missing: run `python -m deployments.bootstrap "
            "--results-bucket BUCKET` first"
        )


def orchestrator_image(builder: ImageBuilder) -> tuple[ImageRef, str]:
    """The image pinned by digest, and whether this call built it."""
    with orchestrator_context() as context:
        found = builder.find(builder.image_for(context))
        if found is not None:
            return found, "present"
        return builder.build(context, print), "built"


def register_deployment(api_url: str) -> None:
    """`prefect deploy` of the `cloud-run` entry of prefect.yaml, as `make deploy` does."""
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", DEPLOYMENT]
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "PREFECT_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=DEPLOY_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        lines = (completed.stderr or completed.stdout).strip().splitlines() or ["no output"]
        raise ConfigurationError(f"`prefect deploy --name {DEPLOYMENT}` failed: {lines[-1]}")


def deploy_gcp(gcp: GcpSettings) -> dict[str, str]:
    """Everything `make deploy-gcp` does → what was done to each part."""
    if not gcp.project:
        raise ConfigurationError(f"gcp.project is not set: set {how_to_set('gcp.project')}")
    api_url = check_prefect()
    check_results_block()
    image, built = orchestrator_image(build_gcp_image_builder(gcp, ORCHESTRATOR_IMAGE))
    spec = cloud_run_pool(gcp, image.uri)
    with get_client(sync_client=True) as client:
        pool = ensure_pool(client, spec)
    register_deployment(api_url)
    return {
        f"orchestrator image {image.uri}": built,
        f"work pool {spec.name}": pool,
        f"deployment emoji-finetune/{DEPLOYMENT}": "deployed",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.deploy_gcp", description=__doc__)
    parser.add_argument("--gcp-project", help="the project (default: PIPELINE_GCP__PROJECT)")
    parser.add_argument("--gcp-region", help="the region (default: PIPELINE_GCP__REGION)")
    args = parser.parse_args(argv)
    return run_and_report(lambda: deploy_gcp(gcp_settings(args.gcp_project, args.gcp_region)))


if __name__ == "__main__":
    sys.exit(main())
