"""The `gcp` section of the settings, and the names of every Google resource derived from it.

Kept next to the backend (not in `flows/`) so the backend can take it as a typed argument
without importing the flow layer; `flows/settings.py` re-exports it as one section of
`PipelineSettings`. Every rule Google enforces on a name is checked here, so a typo stops the
run with one line before any API is called — a rejected create after the bucket and the secret
already exist would leave half a deployment behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import NoDecode

from core.cost import Prices

# Cloud Run regions offering NVIDIA L4 GPUs (asia-south1 is by invitation).
L4_REGIONS = (
    "us-central1",
    "us-east4",
    "europe-west1",
    "europe-west4",
    "asia-southeast1",
    "asia-south1",
)
GPU_TASK_CAP_S = 3600  # Cloud Run stops a GPU job task after one hour
L4_MIN_CPU = 4
L4_MIN_MEMORY_GIB = 16
SERVICE_MAX_INSTANCES = 1  # one L4 serves the demo model; also the ceiling of min_instances
# The APIs each `ensure` step needs, enabled first (Service Usage).
API_NAMES = (
    "run",
    "storage",
    "secretmanager",
    "artifactregistry",
    "cloudbuild",
    "iam",
    "cloudresourcemanager",  # the project's IAM policy (bootstrap's project-level grants)
    "logging",  # the training execution's log lines, streamed into the flow run's logs
)
OVERRIDABLE_APIS = (*API_NAMES, "serviceusage")
# Enabled too, though never called through a client of ours: minting an identity token for the
# smoke test by impersonating the service account (user credentials) goes through it.
ENABLED_APIS = (*API_NAMES, "iamcredentials")
ALL_APIS = "*"
# Marks a field that only the environment may set (PIPELINE_GCP__…): the flow's parameters and
# the CLI leave it out, so no UI form, API call or event can redirect where credentials go.
ENV_ONLY = {"env_only": True}

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_RUN_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$")  # ≤30: leaves room for tags
# A prefix: each account appends `-<role>` (at most 8 characters) within Google's 30.
_ACCOUNT_PREFIX = re.compile(r"^[a-z][a-z0-9-]{4,20}[a-z0-9]$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_IMAGE = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$")


# field → (pattern, the rule in words): the message an operator sees for a bad name.
NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "project": (
        _PROJECT_ID,
        "a project id: 6-30 lowercase letters, digits or hyphens, starting with a letter "
        "(see `gcloud projects list`)",
    ),
    "job": (_RUN_NAME, "a Cloud Run name: 1-30 lowercase letters, digits or hyphens"),
    "service": (_RUN_NAME, "a Cloud Run name: 1-30 lowercase letters, digits or hyphens"),
    "service_account": (
        _ACCOUNT_PREFIX,
        "a service account id prefix: 6-22 lowercase letters, digits or hyphens, starting with "
        "a letter (each account appends -trainer, -server, -runner, -invoker or -builder)",
    ),
    "hf_token_secret": (_SECRET_ID, "a secret id: 1-255 letters, digits, underscores, hyphens"),
    "repository": (_REPOSITORY_ID, "a repository id: lowercase letters, digits or hyphens"),
    "bucket": (_BUCKET, "a bucket name: 3-63 lowercase letters, digits, hyphens, underscores"),
    "vllm_image": (_IMAGE, "an image reference with a registry host and a pinned tag or digest"),
}


class GcpSettings(BaseModel):
    """Where and how the pipeline runs on Google Cloud (only read when backend=gcp)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = Field(None, description="Google Cloud project id (required for gcp).")
    # Before `region`, so region's check can read it.
    gpu_regions: Annotated[tuple[str, ...], NoDecode] = Field(
        L4_REGIONS,
        min_length=1,
        description="Regions offering Cloud Run L4 GPUs (comma-separated); region must be one.",
    )
    region: str = Field("europe-west1", description="Region with Cloud Run L4 GPUs.")
    bucket: str | None = Field(
        None,
        description="Bucket for models, inputs, build sources (unset: PROJECT-emoji-models).",
    )
    service_account: str = Field(
        "emoji-finetune",
        description=(
            "Prefix of the pipeline's service accounts: PREFIX-trainer (the job), -server "
            "(the service), -runner (the orchestrator), -invoker (the smoke test), -builder "
            "(Cloud Build)."
        ),
    )
    hf_token_secret: str = Field(
        "hf-token",
        description="Secret Manager secret for the HF token (its value comes from $HF_TOKEN).",
    )
    repository: str = Field(
        "emoji-finetune", description="Artifact Registry docker repository for the training image."
    )
    job: str = Field("emoji-finetune", description="Cloud Run job that trains.")
    service: str = Field("emoji-gemma", description="Cloud Run service that serves the model.")
    vllm_image: str = Field(
        "docker.io/vllm/vllm-openai:v0.32.0",
        description="vLLM OpenAI server image the service runs (pin a tag or digest).",
    )
    gpu_type: Literal["nvidia-l4"] = Field(
        "nvidia-l4", description="GPU of the job and the service."
    )
    cpu: int = Field(
        8, ge=L4_MIN_CPU, le=8, description="vCPUs of the job and the service (L4: 4-8)."
    )
    memory_gib: int = Field(
        32,
        ge=L4_MIN_MEMORY_GIB,
        le=32,
        description="Memory (GiB) of the job and the service (L4: 16-32).",
    )
    max_retries: int = Field(
        1,
        ge=0,
        le=10,
        description="Job task retries; a retry resumes from the job's checkpoint in the bucket.",
    )
    gpu_zonal_redundancy: bool = Field(
        False,
        description="Reserve GPU capacity in a second zone (costs more; off like the codelab).",
    )
    allow_unauthenticated: bool = Field(
        False, description="Make the service public; otherwise callers need roles/run.invoker."
    )
    min_instances: int = Field(
        0,
        ge=0,
        le=SERVICE_MAX_INSTANCES,
        description=(
            "Service instances kept warm (0 or 1). 0 scales to zero: nothing billed when idle, "
            "but the first request after idling waits for a cold start (minutes). 1 answers at "
            "once, but its L4 instance bills around the clock (list price ~$1.4/h, ~$1000/month)."
        ),
    )
    api_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Point Google APIs at local stand-ins, e.g. {"*": "http://127.0.0.1:9000"} '
            "(anonymous credentials; keys: * or an API name). Environment only."
        ),
        json_schema_extra=ENV_ONLY,
    )
    poll_interval_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds between status checks of builds, executions and revisions.",
    )
    log_tail_s: float = Field(
        10.0,
        ge=0,
        le=120,
        description=(
            "After the training execution ends, how long its last log lines are awaited "
            "(Cloud Logging shows entries a few seconds after the job writes them)."
        ),
    )
    api_retry_deadline_s: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="How long one Google API call is retried on 429/5xx/dropped connections.",
    )
    api_retry_first_delay_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="First backoff delay of those retries (doubles each time, with jitter).",
    )
    service_enable_propagation_s: float = Field(
        300.0,
        ge=0,
        le=1800,
        description="How long 403 SERVICE_DISABLED is retried for an API this run just enabled.",
    )
    listing_settle_s: float = Field(
        60.0,
        ge=0,
        le=600,
        description=(
            "How long to look for the execution or build a failed start may have created "
            "before starting again (listings lag behind creates)."
        ),
    )

    # Cloud Run list prices, USD per second, instance-based billing, Tier 1 regions (europe-west1,
    # europe-west4, us-central1, us-east4); Tier 2 regions cost more. Check them again at
    # https://cloud.google.com/run/pricing and move `prices_checked` with them.
    price_gpu_usd_per_s: float = Field(
        0.0001867,
        gt=0,
        description="List price of one L4 GPU-second without zonal redundancy (Cloud Run).",
    )
    price_gpu_zonal_redundancy_usd_per_s: float = Field(
        0.0002909,
        gt=0,
        description="List price of one L4 GPU-second with zonal redundancy (Cloud Run).",
    )
    price_vcpu_usd_per_s: float = Field(
        0.000018, gt=0, description="List price of one vCPU-second (Cloud Run, instance-based)."
    )
    price_gib_usd_per_s: float = Field(
        0.000002, gt=0, description="List price of one GiB-second of memory (instance-based)."
    )
    prices_checked: date = Field(
        date(2026, 12, 1), description="When the price_* settings were last checked."
    )

    def prices(self) -> Prices:
        """The list prices this run's GPUs, vCPUs and memory are billed at."""
        gpu = (
            self.price_gpu_zonal_redundancy_usd_per_s
            if self.gpu_zonal_redundancy
            else self.price_gpu_usd_per_s
        )
        checked = self.prices_checked.isoformat()
        return Prices(gpu, self.price_vcpu_usd_per_s, self.price_gib_usd_per_s, checked)

    @field_validator(*NAME_RULES)
    @classmethod
    def _follows_google_naming_rules(cls, value: str | None, info: ValidationInfo) -> str | None:
        pattern, rule = NAME_RULES[str(info.field_name)]
        if value is not None and not pattern.match(value):
            raise ValueError(f"must be {rule}")
        return value

    @field_validator("gpu_regions", mode="before")
    @classmethod
    def _split_regions(cls, value: object) -> object:
        """Accept "us-central1,europe-west1" from the CLI or an env var."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("api_endpoints")
    @classmethod
    def _known_apis(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {ALL_APIS, *OVERRIDABLE_APIS})
        if unknown:
            raise ValueError(
                f"unknown API {unknown}; use '*' or one of {', '.join(OVERRIDABLE_APIS)}"
            )
        bad = sorted(url for url in value.values() if not url.startswith(("http://", "https://")))
        if bad:
            raise ValueError(f"endpoints must be http(s) URLs, got {bad}")
        return value

    @field_validator("region")
    @classmethod
    def _region_has_gpus(cls, value: str, info: ValidationInfo) -> str:
        regions = info.data.get("gpu_regions", L4_REGIONS)
        if value not in regions:
            raise ValueError(
                f"{value!r} does not offer Cloud Run L4 GPUs; use one of {', '.join(regions)} "
                "(or extend gcp.gpu_regions if Google added it)"
            )
        return value


# One service account per job to do, each with only what that job needs (README: the roles).
AccountRole = Literal["trainer", "server", "runner", "invoker", "builder"]
ACCOUNT_ROLES: tuple[AccountRole, ...] = ("trainer", "server", "runner", "invoker", "builder")


@dataclass(frozen=True)
class GcpNames:
    """Every resource name the backend uses, derived once from the settings."""

    project: str
    region: str
    bucket: str
    account_prefix: str
    secret_id: str
    repository_id: str
    job_id: str
    service_id: str

    @classmethod
    def from_settings(cls, settings: GcpSettings) -> GcpNames:
        if not settings.project:
            raise ValueError("gcp.project is required for backend=gcp")
        return cls(
            project=settings.project,
            region=settings.region,
            bucket=settings.bucket or f"{settings.project}-emoji-models",
            account_prefix=settings.service_account,
            secret_id=settings.hf_token_secret,
            repository_id=settings.repository,
            job_id=settings.job,
            service_id=settings.service,
        )

    @property
    def location(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def account_id(self, role: AccountRole) -> str:
        return f"{self.account_prefix}-{role}"

    def account_email(self, role: AccountRole) -> str:
        return f"{self.account_id(role)}@{self.project}.iam.gserviceaccount.com"

    def account_name(self, role: AccountRole) -> str:
        """The account's resource name (IAM API, and Cloud Build's `serviceAccount`)."""
        return f"projects/{self.project}/serviceAccounts/{self.account_email(role)}"

    @property
    def trainer_email(self) -> str:
        return self.account_email("trainer")

    @property
    def server_email(self) -> str:
        return self.account_email("server")

    @property
    def invoker_email(self) -> str:
        return self.account_email("invoker")

    @property
    def service_iam_role(self) -> str:
        """The runner's custom role: set the service's IAM policy (its invoker binding)."""
        return f"projects/{self.project}/roles/{self.account_prefix.replace('-', '_')}_service_iam"

    @property
    def secret(self) -> str:
        return f"projects/{self.project}/secrets/{self.secret_id}"

    @property
    def repository(self) -> str:
        return f"{self.location}/repositories/{self.repository_id}"

    @property
    def job(self) -> str:
        return f"{self.location}/jobs/{self.job_id}"

    @property
    def service(self) -> str:
        return f"{self.location}/services/{self.service_id}"

    @property
    def image_repository(self) -> str:
        """Docker path of the training image (named after the job), without tag or digest."""
        return self.image_path(self.job_id)

    def image_path(self, package: str) -> str:
        """Docker path of an image `package` in the pipeline's registry."""
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.repository_id}/{package}"
