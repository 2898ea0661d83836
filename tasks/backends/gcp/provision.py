"""Provision everything the job and the service need, idempotently, with least privilege.

Each `ensure_*` is get → create if absent → re-get, so a second run sends only reads. Order
matters: APIs first (nothing else answers before), then the service account (bindings name it),
the bucket and the secret, their single-resource bindings, and the registry. The HF token is
read from `$HF_TOKEN` at provision time; a new secret version is added only when its sha256
differs from the current one, and the value never reaches a log, a result or an error.

Every call goes through `GoogleCalls` (per-call retries); each create that can lose a race to
another run is a *converging* call — read, create if absent — so a 409 ALREADY_EXISTS re-reads
and goes on with the resource the other run made.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import artifactregistry_v1, secretmanager_v1, service_usage_v1
from google.iam.v1 import iam_policy_pb2

from core.contracts import ConfigurationError, LogCallback, ProvisionReport, TransientError
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import ENABLED_APIS, GcpNames
from tasks.backends.gcp.errors import as_api_error
from tasks.backends.gcp.iam import add_member_with_etag, add_proto_member, has_proto_member

HF_TOKEN_ENV = "HF_TOKEN"
OPERATION_TIMEOUT_S = 300.0
ACCOUNT_VISIBLE_S = 60.0  # IAM is eventually consistent: a new account may 404 for a while
ACCOUNT_POLL_S = 2.0
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
OBJECT_ADMIN = "roles/storage.objectAdmin"


def token_fingerprint(value: bytes) -> bytes:
    """sha256 of a secret value: what is compared, so the values themselves never are."""
    return hashlib.sha256(value).digest()


class GcpProvisioner:
    """`Provisioner` for APIs, service account, bucket, secret, bindings and registry."""

    def __init__(self, clients: GoogleClients, names: GcpNames, calls: GoogleCalls) -> None:
        self.clients = clients
        self.names = names
        self.calls = calls

    # ------------------------------------------------------------------ protocol

    def is_ready(self) -> bool:
        """Cheap reads: the bucket, registry and secret exist and the token is current."""
        try:
            return (
                self._bucket() is not None
                and self._repository() is not None
                and self._secret() is not None
                and self._token_to_add() is None
            )
        except (ConfigurationError, TransientError):
            return False  # let `ensure` run and report the problem properly

    def ensure(self, on_log: LogCallback) -> ProvisionReport:
        token = self._preflight_token()
        created: list[str] = []

        def note(what: str, changed: bool) -> None:
            if changed:
                created.append(what)
            on_log(f"{what}: {'created' if changed else 'present'}")

        note("apis", self.ensure_apis(on_log))
        note(f"service account {self.names.service_account_email}", self.ensure_account(on_log))
        note(f"bucket gs://{self.names.bucket}", self.ensure_bucket(on_log))
        note(f"secret {self.names.secret_id}", self.ensure_secret(on_log))
        note(f"secret version of {self.names.secret_id}", self.ensure_secret_version(token, on_log))
        note(f"{SECRET_ACCESSOR} on the secret", self.ensure_secret_binding(on_log))
        note(f"{OBJECT_ADMIN} on the bucket", self.ensure_bucket_binding(on_log))
        note(f"registry {self.names.repository_id}", self.ensure_repository(on_log))
        return ProvisionReport(store_uri=f"gs://{self.names.bucket}", created=tuple(created))

    # ------------------------------------------------------------------ preflight

    def _preflight_token(self) -> bytes | None:
        """Fail before any change when the job could never get an HF token.

        With `$HF_TOKEN` set it becomes the secret's value; without it, the secret must already
        hold a version (a scheduled run need not carry the token every time).
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
                "token with access to the base model> for the first run"
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

    # ------------------------------------------------------------------ service account

    def ensure_account(self, on_log: LogCallback) -> bool:
        body = {
            "accountId": self.names.account_id,
            "serviceAccount": {"displayName": "emoji fine-tuning job and server"},
        }

        def converge() -> bool:
            if self._account_now() is not None:
                return False
            accounts = self.clients.iam.projects().serviceAccounts()
            accounts.create(name=f"projects/{self.names.project}", body=body).execute()
            return True

        what = f"service account {self.names.account_id}"
        created = self.calls.call("create", what, converge, converge=True, on_log=on_log)
        deadline = time.monotonic() + ACCOUNT_VISIBLE_S
        while self._account() is None:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"service account {self.names.service_account_email} not visible yet"
                )
            time.sleep(ACCOUNT_POLL_S)
        return created

    def _account(self) -> dict[str, Any] | None:
        return self.calls.call(
            "read", f"service account {self.names.account_id}", self._account_now
        )

    def _account_now(self) -> dict[str, Any] | None:
        name = f"projects/{self.names.project}/serviceAccounts/{self.names.service_account_email}"
        accounts = self.clients.iam.projects().serviceAccounts()
        try:
            return dict(accounts.get(name=name).execute())
        except Exception as error:
            converted = as_api_error(error)
            if isinstance(converted, gexc.NotFound):
                return None
            raise converted from None

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

    def ensure_bucket_binding(self, on_log: LogCallback) -> bool:
        bucket = self.clients.storage.bucket(self.names.bucket)
        member = f"serviceAccount:{self.names.service_account_email}"

        def has_member(policy: Any) -> bool:
            return any(
                b["role"] == OBJECT_ADMIN and member in b["members"] for b in policy.bindings
            )

        def add_member(policy: Any) -> None:
            policy.bindings.append({"role": OBJECT_ADMIN, "members": {member}})

        edit = add_member_with_etag(
            lambda: bucket.get_iam_policy(requested_policy_version=3),
            has_member,
            add_member,
            bucket.set_iam_policy,
        )
        what = f"{OBJECT_ADMIN} on gs://{self.names.bucket}"
        return self.calls.call("grant", what, edit, converge=True, on_log=on_log)

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

    def _secret(self) -> secretmanager_v1.Secret | None:
        return self.calls.call("read", f"secret {self.names.secret_id}", self._secret_now)

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

    def _token_to_add(self) -> bytes | None:
        return self.calls.call("read", f"secret {self.names.secret_id}", self._token_to_add_now)

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

    def ensure_secret_binding(self, on_log: LogCallback) -> bool:
        secrets = self.clients.secrets
        resource = self.names.secret
        member = f"serviceAccount:{self.names.service_account_email}"
        edit = add_member_with_etag(
            lambda: secrets.get_iam_policy(
                request=iam_policy_pb2.GetIamPolicyRequest(resource=resource)
            ),
            lambda policy: has_proto_member(policy, SECRET_ACCESSOR, member),
            lambda policy: add_proto_member(policy, SECRET_ACCESSOR, member),
            lambda policy: secrets.set_iam_policy(
                request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
            ),
        )
        what = f"{SECRET_ACCESSOR} on {self.names.secret_id}"
        return self.calls.call("grant", what, edit, converge=True, on_log=on_log)

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

    def _repository(self) -> artifactregistry_v1.Repository | None:
        return self.calls.call("read", f"registry {self.names.repository_id}", self._repository_now)

    def _repository_now(self) -> artifactregistry_v1.Repository | None:
        try:
            return self.clients.registry.get_repository(name=self.names.repository)
        except gexc.NotFound:
            return None
