"""Who may do what: every IAM binding the pipeline needs, as data (no API calls).

One account per job, each holding only what that job does, on the narrowest resource Google
lets a role be granted on:

| account | what it is                | what it may do                                        |
|---------|---------------------------|-------------------------------------------------------|
| trainer | the Cloud Run job         | read the HF secret; read-write `models/`, `inputs/`   |
| server  | the Cloud Run service     | read `models/`                                        |
| builder | Cloud Build               | read `builds/`; push to the repository; write logs    |
| runner  | the orchestrating flow    | run jobs, deploy services and builds as the three     |
|         |                           | above (and orchestrator jobs as itself); stage        |
|         |                           | inputs; read the registry and the secret metadata,    |
|         |                           | the training job's logs and the GPU quota             |
| invoker | the smoke test's identity | call the service (the runner impersonates it)         |

The bucket grants carry IAM conditions on object prefixes (GCS evaluates `resource.name` as
`projects/_/buckets/B/objects/NAME`). Listing is checked against the bucket itself, not an
object, so the accounts that mount the bucket (gcsfuse lists directories) also match
`resource.type == Bucket`: they can list object *names* bucket-wide, never read other objects.
The runner's bucket grant is unconditional: it touches every prefix (uploads `builds/` and
`inputs/`, verifies and lists `models/`, deletes them on teardown).

The invoker's `run.invoker` binding is on the service, which the first deploy creates, so it is
written by the deploy step (read first: a rerun writes nothing), using the runner's custom role
limited to reading and setting the IAM policy of Cloud Run services — not an IAM-admin role.
`bootstrap` writes everything else; the per-run pipeline needs none of the rights to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tasks.backends.gcp.config import AccountRole, GcpNames

ResourceKind = Literal["project", "bucket", "secret", "repository", "account", "service"]
INVOKER_ROLE = "roles/run.invoker"
BUCKET_TYPE = "storage.googleapis.com/Bucket"
# The runner's custom role: the one write the per-run pipeline makes to an IAM policy.
SERVICE_IAM_PERMISSIONS = ("run.services.getIamPolicy", "run.services.setIamPolicy")


@dataclass(frozen=True)
class Condition:
    """An IAM condition (CEL); a binding with one needs a version-3 policy."""

    title: str
    expression: str

    def as_json(self) -> dict[str, str]:
        return {"title": self.title, "expression": self.expression}


@dataclass(frozen=True)
class Grant:
    """One binding: `account` gets `role` on the resource `target` of kind `kind`."""

    account: AccountRole
    role: str
    kind: ResourceKind
    target: str  # projects/P, the bucket, or the secret's, repository's, account's, service's name
    condition: Condition | None = None

    def member(self, names: GcpNames) -> str:
        return f"serviceAccount:{names.account_email(self.account)}"


def prefixes_condition(
    names: GcpNames, title: str, prefixes: tuple[str, ...], listing: bool
) -> Condition:
    """Objects under `prefixes` (and the bucket itself when the account must list it)."""
    objects = f"projects/_/buckets/{names.bucket}/objects/"
    clauses = [f'resource.name.startsWith("{objects}{prefix}/")' for prefix in prefixes]
    if listing:
        clauses.insert(0, f'resource.type == "{BUCKET_TYPE}"')
    return Condition(title=title, expression=" || ".join(clauses))


def bootstrap_grants(names: GcpNames) -> tuple[Grant, ...]:
    """Every binding `bootstrap` writes, in the order it writes them."""
    project = f"projects/{names.project}"
    bucket, secret, repository = names.bucket, names.secret, names.repository
    return (
        Grant("trainer", "roles/secretmanager.secretAccessor", "secret", secret),
        Grant(
            "trainer",
            "roles/storage.objectUser",
            "bucket",
            bucket,
            prefixes_condition(names, "trainer: models and inputs", ("models", "inputs"), True),
        ),
        Grant(
            "server",
            "roles/storage.objectViewer",
            "bucket",
            bucket,
            prefixes_condition(names, "server: models, read-only", ("models",), True),
        ),
        Grant(
            "builder",
            "roles/storage.objectViewer",
            "bucket",
            bucket,
            prefixes_condition(names, "builder: build sources", ("builds",), False),
        ),
        Grant("builder", "roles/artifactregistry.writer", "repository", repository),
        Grant("builder", "roles/logging.logWriter", "project", project),
        Grant("runner", "roles/run.developer", "project", project),
        Grant("runner", "roles/cloudbuild.builds.editor", "project", project),
        Grant("runner", "roles/logging.viewer", "project", project),  # the job's log lines
        Grant("runner", names.service_iam_role, "project", project),
        Grant("runner", "roles/serviceusage.serviceUsageViewer", "project", project),
        Grant("runner", "roles/storage.objectUser", "bucket", bucket),
        Grant("runner", "roles/artifactregistry.reader", "repository", repository),
        Grant("runner", "roles/secretmanager.viewer", "secret", secret),
        # ...and as itself: the cloud-run-v2 worker, running as the runner, creates each
        # orchestrator job with the runner as its identity (`make deploy-gcp`).
        *(
            Grant("runner", "roles/iam.serviceAccountUser", "account", names.account_email(who))
            for who in ("trainer", "server", "builder", "runner")
        ),
        Grant(
            "runner",
            "roles/iam.serviceAccountTokenCreator",
            "account",
            names.invoker_email,
        ),
    )


def invoker_grant(names: GcpNames) -> Grant:
    """The one binding the deploy step writes (on a service it just created)."""
    return Grant("invoker", INVOKER_ROLE, "service", names.service)
