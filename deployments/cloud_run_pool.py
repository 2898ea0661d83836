"""The `emoji-cloud-run` work pool's base job template, filled from the `gcp` settings.

The committed JSON is prefect-gcp's cloud-run-v2 base template with this project's defaults
(2 vCPU, 4 GiB, no retries). Everything that depends on the installation is filled in here
from the same `GcpSettings` a run uses, so the pool can never name another project, region
or account than the pipeline does:

* the image: the orchestrator image pinned by registry digest (`deployments.deploy_gcp`);
* the runner account (the identity the flow runs as) and the region;
* the credentials' project, so the worker creates the container job in that project;
* the environment every flow on this pool needs: the gcp backend, the project's non-default
  `gcp` settings as `PIPELINE_GCP__…`, and task results in the `GcsBucket` block (Cloud Run
  throws the container away after each run, so `PREFECT_HOME` does not last).

Deployment job variables (prefect.yaml) are merged on top of the `env` default by the worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.settings import env_variable, is_env_only
from tasks.backends.gcp.config import GcpNames, GcpSettings

TEMPLATE_PATH = Path(__file__).with_name("cloud-run-v2-base-job-template.json")
RESULTS_BLOCK = "emoji-finetune-results"
ORCHESTRATOR_IMAGE = "orchestrator"  # its package in the pipeline's Artifact Registry repository
BASE_ENV = {
    "PIPELINE_BACKEND": "gcp",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": f"gcs-bucket/{RESULTS_BLOCK}",
}


def _env_value(value: object) -> str:
    """A settings value as its `PIPELINE_…` variable spells it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return str(value)


def gcp_env(gcp: GcpSettings) -> dict[str, str]:
    """The `gcp` settings that differ from their defaults, as the flow's environment.

    Environment-only fields (API endpoint overrides: test hooks) never go to Cloud Run.
    """
    env: dict[str, str] = {}
    for name, info in GcpSettings.model_fields.items():
        value = getattr(gcp, name)
        if is_env_only(info) or value == info.get_default(call_default_factory=True):
            continue
        env[env_variable(f"gcp.{name}")] = _env_value(value)
    return env


def cloud_run_template(gcp: GcpSettings | None, image: str | None) -> dict[str, Any]:
    """The base template; with settings, filled for their project (and `image`, if known)."""
    template: dict[str, Any] = json.loads(TEMPLATE_PATH.read_text())
    properties = template["variables"]["properties"]
    env = dict(BASE_ENV)
    if gcp is not None:
        names = GcpNames.from_settings(gcp)
        env |= gcp_env(gcp)
        properties["region"]["default"] = names.region
        properties["service_account_name"]["default"] = names.account_email("runner")
        properties["credentials"]["default"] = {"project": names.project}
    if image is not None:
        properties["image"]["default"] = image
    properties["env"]["default"] = env
    return template


def template_image(template: dict[str, Any]) -> str | None:
    """The image a registered template runs (None when it has none yet)."""
    properties = template.get("variables", {}).get("properties", {})
    default = properties.get("image", {}).get("default")
    return default if isinstance(default, str) else None
