"""The per-run provision step on GCP: check, with reads only, that bootstrap was done.

Creating accounts, enabling APIs and granting roles takes admin rights that a scheduled run
must not hold, so `bootstrap.py` does it once (`python -m deployments.bootstrap
--gcp-project P`). Each run reads what the job and the service rely on — the accounts they run
as, the bucket, the secret's value, the registry — with rights the runner holds anyway, and
stops at the first missing one with one line naming it and the command that creates it. It
writes nothing: a rerun (and a first run) makes no IAM write here. `gpu_quota` reads the
region's L4 quota, which the flow checks before it provisions, builds or trains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc

from core.contracts import (
    ConfigurationError,
    GpuQuota,
    LogCallback,
    ProvisionReport,
    TransientError,
)
from tasks.backends.gcp.bootstrap import read_account
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import AccountRole, GcpNames, GcpSettings
from tasks.backends.gcp.quota import GpuQuotaReader

# The accounts a run uses: the job and the service run as the first two, the build as the
# third, the smoke test as the fourth (the runner is whoever runs the flow).
RUN_ACCOUNTS: tuple[AccountRole, ...] = ("trainer", "server", "builder", "invoker")


class GcpProvisioner:
    """`Provisioner` that only checks: bootstrap created everything a run needs."""

    def __init__(
        self, clients: GoogleClients, names: GcpNames, calls: GoogleCalls, settings: GcpSettings
    ) -> None:
        self.clients = clients
        self.names = names
        self.calls = calls
        self.quota = GpuQuotaReader(clients, names, calls, settings)

    def is_ready(self) -> bool:
        try:
            return self._missing() is None
        except (ConfigurationError, TransientError):
            return False  # let `ensure` run and report the problem properly

    def ensure(self, on_log: LogCallback) -> ProvisionReport:
        missing = self._missing()
        if missing is not None:
            raise ConfigurationError(
                f"{missing} in project {self.names.project}: bootstrap has not run (or was "
                f"undone); an admin runs `{self.bootstrap_command()}` (README: Running on "
                "Google Cloud)"
            )
        on_log(f"bootstrap of project {self.names.project}: present")
        return ProvisionReport(store_uri=f"gs://{self.names.bucket}", created=())

    def gpu_quota(self) -> GpuQuota:
        """The region's L4 quota (`quota.py`): read before the build, so a 0 stops the run
        before anything costs money."""
        return self.quota.read()

    def bootstrap_command(self) -> str:
        return (
            f"python -m deployments.bootstrap --gcp-project {self.names.project} "
            f"--gcp-region {self.names.region}"
        )

    def _missing(self) -> str | None:
        """What is missing, first in the order a run needs it; None when all is there."""
        names = self.names
        for role in RUN_ACCOUNTS:
            email = names.account_email(role)
            account = self._read(f"service account {email}", lambda n=email: self._account(n))
            if account is None:
                return f"service account {email} does not exist"
        checks: list[tuple[str, Callable[[], Any]]] = [
            (f"bucket gs://{names.bucket}", self._bucket),
            (f"secret {names.secret_id} (or a version of it)", self._secret_version),
            (f"registry {names.repository_id}", self._repository),
        ]
        for what, read in checks:
            if self._read(what, read) is None:
                return f"{what} does not exist"
        return None

    def _read(self, what: str, read: Callable[[], Any]) -> Any:
        return self.calls.call("read", what, read)

    def _account(self, email: str) -> Any:
        return read_account(self.clients, f"projects/{self.names.project}/serviceAccounts/{email}")

    def _bucket(self) -> Any:
        """A one-object listing: the runner may list objects, not read bucket metadata."""
        try:
            list(self.clients.storage.list_blobs(self.names.bucket, max_results=1))
            return True
        except gexc.NotFound:
            return None

    def _secret_version(self) -> Any:
        """The latest version's metadata (never its value: the runner cannot read that)."""
        try:
            return self.clients.secrets.get_secret_version(
                name=f"{self.names.secret}/versions/latest"
            )
        except gexc.NotFound:
            return None

    def _repository(self) -> Any:
        try:
            return self.clients.registry.get_repository(name=self.names.repository)
        except gexc.NotFound:
            return None
