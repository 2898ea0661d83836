"""Bootstrap: everything the pipeline needs that takes admin rights, run once by an admin.

`python -m deployments.bootstrap --gcp-project P` calls this; the per-run pipeline then only
*checks* that it was done (`provision.py`) and needs no IAM-admin right. Each `ensure_*` is
get → create if absent → re-get, so a second bootstrap sends only reads. Order matters: APIs
first (nothing else answers before), then the accounts (bindings name them), the bucket, the
secret and its value, the registry, the runner's custom role, and then every binding of
`grants.bootstrap_grants`. The HF token is read from `$HF_TOKEN`; a new secret version is added
only when its sha256 differs from the current one, and the value never reaches a log, a result
or an error.

Every call goes through `GoogleCalls` (per-call retries); each create that can lose a race to
another run is a *converging* call — read, create if absent — so a 409 ALREADY_EXISTS re-reads
and goes on with the resource the other run made. Policies are edited with their etag
(`iam.py`), so nobody else's binding is ever dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import artifactregistry_v1, secretmanager_v1, service_usage_v1
from google.iam.v1 import iam_policy_pb2

from core.contracts import ConfigurationError, LogCallback, ProvisionReport, TransientError
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import ACCOUNT_ROLES, ENABLED_APIS, AccountRole, GcpNames
from tasks.backends.gcp.errors import as_api_error
from tasks.backends.gcp.grants import SERVICE_IAM_PERMISSIONS, Grant, bootstrap_grants
from tasks.backends.gcp.iam import (
    add_binding,
    add_member_with_etag,
    add_proto_member,
    has_binding,
    has_proto_member,
)

HF_TOKEN_ENV = "HF_TOKEN"
OPERATION_TIMEOUT_S = 300.0
ACCOUNT_VISIBLE_S = 60.0  # IAM is eventually consistent: a new account may 404 for a while
ACCOUNT_POLL_S = 2.0
POLICY_VERSION = 3  # conditional bindings need it; asking for it keeps others' conditions
ACCOUNT_PURPOSE: dict[AccountRole, str] = {
    "trainer": "emoji fine-tuning: the training job",
    "server": "emoji fine-tuning: the vLLM service",
    "runner": "emoji fine-tuning: the orchestrating flow",
    "invoker": "emoji fine-tuning: calls the service in the smoke test",
    "builder": "emoji fine-tuning: Cloud Build of the training image",
}


def token_fingerprint(value: bytes) -> bytes:
    """sha256 of a secret value: what is compared, so the values themselves never are."""
    return hashlib.sha256(value).digest()


class GcpBootstrap:
    """APIs, accounts, bucket, secret, registry, custom role and every binding, idempotently."""

    def __init__(self, clients: GoogleClients, names: GcpNames, calls: GoogleCalls) -> None:
        self.clients = clients
        self.names = names
        self.calls = calls

    def ensure(self, on_log: LogCallback) -> ProvisionReport:
        token = self._preflight_token()
        created: list[str] = []

        def note(what: str, changed: bool) -> None:
            if changed:
                created.append(what)
            on_log(f"{what}: {'created' if changed else 'present'}")

        note("apis", self.ensure_apis(on_log))
        for role in ACCOUNT_ROLES:
            note(
                f"service account {self.names.account_email(role)}",
                self.ensure_account(role, on_log),
            )
        note(f"bucket gs://{self.names.bucket}", self.ensure_bucket(on_log))
        note(f"secret {self.names.secret_id}", self.ensure_secret(on_log))
        note(f"secret version of {self.names.secret_id}", self.ensure_secret_version(token, on_log))
        note(f"registry {self.names.repository_id}", self.ensure_repository(on_log))
        note(f"role {self.names.service_iam_role}", self.ensure_service_iam_role(on_log))
        for grant in bootstrap_grants(self.names):
            what = f"{grant.role} for {grant.account} on {grant.target}"
            note(what, self.ensure_grant(grant, on_log))
        return ProvisionReport(store_uri=f"gs://{self.names.bucket}", created=tuple(created))

    # ------------------------------------------------------------------ preflight

    def _preflight_token(self) -> bytes | None:
        """Fail before any change when the job could never get an HF token.

        With `$HF_TOKEN` set it becomes the secret's value; without it, the secret must already
        hold a version (a later bootstrap need not carry the token).
        """
        token = os.environ.get(HF_TOKEN_ENV, "").strip().encode()
        if token:
            return token
        try:
            self.calls.call(
                "read",
                f"secret {self.names.secret_id}",
                lambda: self.clients.secrets.get_secret_version(
                    name=f"{self.names.secret}/versions/latest"
                ),
            )
        except ConfigurationError:
            raise ConfigurationError(
                f"{HF_TOKEN_ENV} is not set and secret {self.names.secret_id} in project "
                f"{self.names.project} has no version yet: export {HF_TOKEN_ENV}=<a Hugging Face "
                "token with access to the base model> for the first bootstrap"
            ) from None
        return None

    # ------------------------------------------------------------------ APIs

    def ensure_apis(self, on_log: LogCallback) -> bool:
        """Enable what is disabled; later calls to those APIs may answer 403 SERVICE_DISABLED
        while the change propagates, so the retry policy is told which ones this run enabled."""
        disabled = self._disabled_apis([f"{api}.googleapis.com" for api in ENABLED_APIS])
        if not disabled:
            return False
        request = service_usage_v1.BatchEnableServicesRequest(
            parent=f"projects/{self.names.project}", service_ids=disabled
        )
        self.calls.call(
            "enable",
            ", ".join(disabled),
            lambda: self.clients.service_usage.batch_enable_services(request=request).result(
                timeout=OPERATION_TIMEOUT_S
            ),
            on_log=on_log,
        )
        self.calls.just_enabled(disabled)
        return True

    def _disabled_apis(self, services: list[str]) -> list[str]:
        disabled = []
        for service in services:
            request = service_usage_v1.GetServiceRequest(
                name=f"projects/{self.names.project}/services/{service}"
            )
            state = self.calls.call(
                "read",
                f"API {service}",
                lambda request=request: (
                    self.clients.service_usage.get_service(request=request).state
                ),
            )
            if state != service_usage_v1.State.ENABLED:
                disabled.append(service)
        return disabled

    # ------------------------------------------------------------------ service accounts

    def ensure_account(self, role: AccountRole, on_log: LogCallback | None = None) -> bool:
        body = {
            "accountId": self.names.account_id(role),
            "serviceAccount": {"displayName": ACCOUNT_PURPOSE[role]},
        }

        def converge() -> bool:
            if self._account_now(role) is not None:
                return False
            accounts = self.clients.iam.projects().serviceAccounts()
            accounts.create(name=f"projects/{self.names.project}", body=body).execute()
            return True

        what = f"service account {self.names.account_id(role)}"
        created = self.calls.call("create", what, converge, converge=True, on_log=on_log)
        deadline = time.monotonic() + ACCOUNT_VISIBLE_S
        while self._account(role) is None:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"service account {self.names.account_email(role)} not visible yet"
                )
            time.sleep(ACCOUNT_POLL_S)
        return created

    def _account(self, role: AccountRole) -> dict[str, Any] | None:
        what = f"service account {self.names.account_id(role)}"
        return self.calls.call("read", what, lambda: self._account_now(role))

    def _account_now(self, role: AccountRole) -> dict[str, Any] | None:
        return read_account(self.clients, self.names.account_name(role))

    # ------------------------------------------------------------------ bucket

    def ensure_bucket(self, on_log: LogCallback) -> bool:
        if self._bucket() is not None:
            return False
        client = self.clients.storage
        bucket = client.bucket(self.names.bucket)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"

        def create() -> bool:
            try:
                client.create_bucket(bucket, location=self.names.region)
            except gexc.Conflict:  # ours already (an earlier attempt), or someone else's name
                if client.lookup_bucket(self.names.bucket) is None:
                    raise
                return False
            return True

        created = self.calls.call(
            "create", f"bucket gs://{self.names.bucket}", create, on_log=on_log
        )
        if self._bucket() is None:
            raise TransientError(f"bucket gs://{self.names.bucket} not visible yet")
        return created

    def _bucket(self) -> Any:
        return self.calls.call(
            "read",
            f"bucket gs://{self.names.bucket}",
            lambda: self.clients.storage.lookup_bucket(self.names.bucket),
        )

    # ------------------------------------------------------------------ secret

    def ensure_secret(self, on_log: LogCallback) -> bool:
        secret = secretmanager_v1.Secret(
            replication=secretmanager_v1.Replication(
                automatic=secretmanager_v1.Replication.Automatic()
            ),
            labels={"app": "emoji-finetune"},
        )

        def converge() -> bool:
            if self._secret_now() is not None:
                return False
            self.clients.secrets.create_secret(
                parent=f"projects/{self.names.project}",
                secret_id=self.names.secret_id,
                secret=secret,
            )
            return True

        what = f"secret {self.names.secret_id}"
        return self.calls.call("create", what, converge, converge=True, on_log=on_log)

    def _secret_now(self) -> secretmanager_v1.Secret | None:
        try:
            return self.clients.secrets.get_secret(name=self.names.secret)
        except gexc.NotFound:
            return None

    def ensure_secret_version(self, token: bytes | None, on_log: LogCallback) -> bool:
        """Add a version only when `$HF_TOKEN` differs from the current value.

        Converging: a retry after an attempt whose answer was lost re-reads the latest value
        first, so it never adds the same value twice.
        """
        if token is None:
            return False
        payload = secretmanager_v1.SecretPayload(data=token)

        def converge() -> bool:
            if self._token_to_add_now() is None:
                return False
            self.clients.secrets.add_secret_version(parent=self.names.secret, payload=payload)
            return True

        what = f"secret {self.names.secret_id}"
        return self.calls.call("add a version to", what, converge, converge=True, on_log=on_log)

    def _token_to_add_now(self) -> bytes | None:
        """`$HF_TOKEN` when it is set and not already the secret's latest value."""
        token = os.environ.get(HF_TOKEN_ENV, "").strip().encode()
        if not token:
            return None
        try:
            current = self.clients.secrets.access_secret_version(
                name=f"{self.names.secret}/versions/latest"
            ).payload.data
        except (gexc.NotFound, gexc.FailedPrecondition):  # no version, or latest disabled
            return token
        same = hmac.compare_digest(token_fingerprint(current), token_fingerprint(token))
        return None if same else token

    # ------------------------------------------------------------------ registry

    def ensure_repository(self, on_log: LogCallback) -> bool:
        repository = artifactregistry_v1.Repository(
            format_=artifactregistry_v1.Repository.Format.DOCKER,
            description="Training images of the emoji fine-tuning pipeline (tag = content hash)",
        )

        def converge() -> bool:
            if self._repository_now() is not None:
                return False
            self.clients.registry.create_repository(
                parent=self.names.location,
                repository_id=self.names.repository_id,
                repository=repository,
            ).result(timeout=OPERATION_TIMEOUT_S)
            return True

        what = f"registry {self.names.repository_id}"
        return self.calls.call("create", what, converge, converge=True, on_log=on_log)

    def _repository_now(self) -> artifactregistry_v1.Repository | None:
        try:
            return self.clients.registry.get_repository(name=self.names.repository)
        except gexc.NotFound:
            return None

    # ------------------------------------------------------------------ custom role

    def ensure_service_iam_role(self, on_log: LogCallback) -> bool:
        """The runner's role for the one IAM write of a run: the new service's invoker."""
        name = self.names.service_iam_role
        parent, role_id = name.rsplit("/roles/", 1)
        body = {
            "roleId": role_id,
            "role": {
                "title": "emoji fine-tuning: set the invoker of its Cloud Run service",
                "description": "Read and set Cloud Run services' IAM policies (run.invoker).",
                "includedPermissions": list(SERVICE_IAM_PERMISSIONS),
                "stage": "GA",
            },
        }
        roles = self.clients.iam.projects().roles()

        def converge() -> bool:
            if read_or_none(lambda: roles.get(name=name).execute()) is not None:
                return False
            roles.create(parent=parent, body=body).execute()
            return True

        return self.calls.call("create", f"role {name}", converge, converge=True, on_log=on_log)

    # ------------------------------------------------------------------ bindings

    def ensure_grant(self, grant: Grant, on_log: LogCallback) -> bool:
        """Add one binding when it is missing (read-modify-write with the policy's etag)."""
        member = grant.member(self.names)
        condition = grant.condition.as_json() if grant.condition is not None else None
        if grant.kind in ("secret", "repository"):
            read, write = self._proto_policy(grant)
            edit = add_member_with_etag(
                read,
                lambda policy: has_proto_member(policy, grant.role, member),
                lambda policy: add_proto_member(policy, grant.role, member),
                write,
            )
        else:
            read_json, write_json = self._json_policy(grant)
            edit = add_member_with_etag(
                read_json,
                lambda policy: has_binding(bindings_of(policy), grant.role, member, condition),
                lambda policy: add_binding(bindings_of(policy), grant.role, member, condition),
                write_json,
            )
        what = f"{grant.role} on {grant.target}"
        return self.calls.call("grant", what, edit, converge=True, on_log=on_log)

    def _proto_policy(self, grant: Grant) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        client: Any = self.clients.secrets if grant.kind == "secret" else self.clients.registry

        def read() -> Any:
            request = iam_policy_pb2.GetIamPolicyRequest(resource=grant.target)
            return client.get_iam_policy(request=request)

        def write(policy: Any) -> Any:
            request = iam_policy_pb2.SetIamPolicyRequest(resource=grant.target, policy=policy)
            return client.set_iam_policy(request=request)

        return read, write

    def _json_policy(self, grant: Grant) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        """Project, account and bucket policies (Google's JSON; the bucket's as the storage
        client's `Policy`). Bindings may carry conditions, so each is read and written at
        version 3."""
        if grant.kind == "bucket":
            bucket = self.clients.storage.bucket(grant.target)

            def read_bucket() -> Any:
                return bucket.get_iam_policy(requested_policy_version=POLICY_VERSION)

            def write_bucket(policy: Any) -> Any:
                policy.version = POLICY_VERSION
                return bucket.set_iam_policy(policy)

            return read_bucket, write_bucket
        if grant.kind == "project":
            api = self.clients.resource_manager.projects()
            resource = grant.target
        else:
            api = self.clients.iam.projects().serviceAccounts()
            resource = f"projects/{self.names.project}/serviceAccounts/{grant.target}"

        def read() -> dict[str, Any]:
            if grant.kind == "project":  # Resource Manager takes the version in a body,
                body = {"options": {"requestedPolicyVersion": POLICY_VERSION}}
                return dict(api.getIamPolicy(resource=resource, body=body).execute())
            return dict(  # IAM's service accounts in a query parameter
                api.getIamPolicy(
                    resource=resource, options_requestedPolicyVersion=POLICY_VERSION
                ).execute()
            )

        def write(policy: dict[str, Any]) -> Any:
            body = {"policy": {**policy, "version": POLICY_VERSION}}
            return api.setIamPolicy(resource=resource, body=body).execute()

        return read, write


def bindings_of(policy: Any) -> list[dict[str, Any]]:
    """The mutable bindings of a JSON policy or of the storage client's `Policy`."""
    if isinstance(policy, dict):
        return policy.setdefault("bindings", [])  # type: ignore[no-any-return]
    return policy.bindings  # type: ignore[no-any-return]


def read_or_none(read: Callable[[], Any]) -> Any:
    """`read()`, or None on a 404 (the discovery clients raise their own HttpError)."""
    try:
        return read()
    except Exception as error:
        converted = as_api_error(error)
        if isinstance(converted, gexc.NotFound):
            return None
        raise converted from None


def read_account(clients: GoogleClients, name: str) -> dict[str, Any] | None:
    accounts = clients.iam.projects().serviceAccounts()
    found = read_or_none(lambda: accounts.get(name=name).execute())
    return None if found is None else dict(found)
