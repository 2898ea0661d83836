"""What already exists in the project (plan mode): one GET per resource, never a write.

A fresh project answers 403 SERVICE_DISABLED until `provision` enables the APIs; such a
resource is reported as unknown (`exists=None`), which a plan shows as "would be created".
"""

from __future__ import annotations

from collections.abc import Callable

from google.api_core import exceptions as gexc
from google.cloud import service_usage_v1

from core.contracts import PipelineError, ResourceState
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import ACCOUNT_ROLES, API_NAMES, GcpNames
from tasks.backends.gcp.errors import as_api_error


class GcpInventory:
    """`Inventory` of the APIs, accounts, bucket, secret, registry, job and service."""

    def __init__(self, clients: GoogleClients, names: GcpNames, calls: GoogleCalls) -> None:
        self.clients = clients
        self.names = names
        self.calls = calls

    def resources(self) -> list[ResourceState]:
        names, c = self.names, self.clients
        accounts = c.iam.projects().serviceAccounts()
        checks: list[tuple[str, str, Callable[[], object]]] = [
            *(("api", f"{api}.googleapis.com", self._api_enabled(api)) for api in API_NAMES),
            *(("service account", names.account_email(role),
               lambda role=role: accounts.get(name=names.account_name(role)).execute())
              for role in ACCOUNT_ROLES),
            ("bucket", f"gs://{names.bucket}", lambda: c.storage.lookup_bucket(names.bucket)),
            ("secret", names.secret_id, lambda: c.secrets.get_secret(name=names.secret)),
            ("registry", names.repository_id,
             lambda: c.registry.get_repository(name=names.repository)),
            ("job", names.job_id, lambda: c.jobs.get_job(name=names.job)),
            ("service", names.service_id, lambda: c.services.get_service(name=names.service)),
        ]  # fmt: skip
        return [self._probe(kind, name, read) for kind, name, read in checks]

    def _api_enabled(self, api: str) -> Callable[[], object]:
        name = f"projects/{self.names.project}/services/{api}.googleapis.com"

        def read() -> object:
            request = service_usage_v1.GetServiceRequest(name=name)
            service = self.clients.service_usage.get_service(request=request)
            return service if service.state == service_usage_v1.State.ENABLED else None

        return read

    def _probe(self, kind: str, name: str, read: Callable[[], object]) -> ResourceState:
        def found_or_none() -> object:
            try:
                return read()
            except Exception as error:  # IAM's discovery client raises its own HttpError
                if isinstance(as_api_error(error), gexc.NotFound):
                    return None
                raise

        try:
            found = self.calls.call("read", f"{kind} {name}", found_or_none)
        except PipelineError as error:  # not readable yet (API disabled, no permission)
            return ResourceState(kind, name, None, str(error).split(";")[0])
        return ResourceState(kind, name, found is not None)
