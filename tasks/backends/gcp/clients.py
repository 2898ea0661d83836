"""The one place that builds Google API clients (and the identity token for the service).

Every client uses the REST transport, so one setting (`gcp.api_endpoints`) can point any API at
a local stand-in: the tests run the real client libraries against a local fake and the GCS
emulator, and anyone can do the same. When an endpoint is overridden the client gets anonymous
credentials — a local stand-in must never receive a real token. Clients are built on first use,
so a run that never deploys never asks for Cloud Run's client, and building the backend (done
before the flow starts, to validate settings) needs no credentials at all.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import google.auth
from google.api_core.client_options import ClientOptions
from google.auth import impersonated_credentials
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import Request
from google.cloud import artifactregistry_v1, run_v2, secretmanager_v1, service_usage_v1, storage
from google.cloud.devtools import cloudbuild_v1

from tasks.backends.gcp.config import ALL_APIS

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# What a local stand-in gets instead of an identity token (never a real credential).
LOCAL_IDENTITY_TOKEN = "local-identity-token"


class GoogleClients:
    """Lazily built clients for one project, honouring endpoint overrides per API."""

    def __init__(self, project: str, endpoints: Mapping[str, str], invoker: str) -> None:
        self.project = project
        self.endpoints = dict(endpoints)
        self.invoker = invoker  # the account the smoke test calls the service as
        self._lock = threading.Lock()  # Prefect may run tasks in threads: build each client once
        self._credentials: Credentials | None = None

    def endpoint(self, api: str) -> str | None:
        """The override for `api` (or for every API), None for Google's own endpoint."""
        return self.endpoints.get(api) or self.endpoints.get(ALL_APIS)

    def credentials_for(self, api: str) -> Credentials:
        if self.endpoint(api) is not None:
            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        with self._lock:
            if self._credentials is None:
                self._credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
            return self._credentials

    def _gapic(self, api: str) -> dict[str, Any]:
        """Keyword arguments for a GAPIC client: REST transport, endpoint, credentials."""
        endpoint = self.endpoint(api)
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        return {
            "credentials": self.credentials_for(api),
            "transport": "rest",
            "client_options": options,
        }

    @cached_property
    def jobs(self) -> run_v2.JobsClient:
        return run_v2.JobsClient(**self._gapic("run"))

    @cached_property
    def executions(self) -> run_v2.ExecutionsClient:
        return run_v2.ExecutionsClient(**self._gapic("run"))

    @cached_property
    def services(self) -> run_v2.ServicesClient:
        return run_v2.ServicesClient(**self._gapic("run"))

    @cached_property
    def revisions(self) -> run_v2.RevisionsClient:
        return run_v2.RevisionsClient(**self._gapic("run"))

    @cached_property
    def secrets(self) -> secretmanager_v1.SecretManagerServiceClient:
        return secretmanager_v1.SecretManagerServiceClient(**self._gapic("secretmanager"))

    @cached_property
    def registry(self) -> artifactregistry_v1.ArtifactRegistryClient:
        return artifactregistry_v1.ArtifactRegistryClient(**self._gapic("artifactregistry"))

    @cached_property
    def builds(self) -> cloudbuild_v1.CloudBuildClient:
        return cloudbuild_v1.CloudBuildClient(**self._gapic("cloudbuild"))

    @cached_property
    def service_usage(self) -> service_usage_v1.ServiceUsageClient:
        return service_usage_v1.ServiceUsageClient(**self._gapic("serviceusage"))

    @cached_property
    def service_usage_quotas(self) -> Any:
        """Service Usage v1beta1 (consumer quota metrics): the GAPIC client has no quotas."""
        return self._discovery("serviceusage", "v1beta1")

    @cached_property
    def storage(self) -> storage.Client:
        endpoint = self.endpoint("storage")
        return storage.Client(
            project=self.project,
            credentials=self.credentials_for("storage"),
            client_options={"api_endpoint": endpoint} if endpoint else None,
        )

    @cached_property
    def iam(self) -> Any:
        """IAM admin (service accounts, roles) has no REST GAPIC client: use discovery."""
        return self._discovery("iam", "v1")

    @cached_property
    def resource_manager(self) -> Any:
        """The project's IAM policy (bootstrap's project-level grants)."""
        return self._discovery("cloudresourcemanager", "v3")

    def logging(self) -> Any:
        """Cloud Logging v2 (`entries.list`), a new client per caller.

        By discovery rather than google-cloud-logging: that library would be a new dependency
        for one method, and the discovery client honours the same endpoint override as IAM's.
        Not cached: its httplib2 connection is not thread-safe, and each follower of an
        execution's logs polls from its own thread.
        """
        return self._discovery("logging", "v2")

    def _discovery(self, api: str, version: str) -> Any:
        from googleapiclient import discovery

        endpoint = self.endpoint(api)
        return discovery.build(
            api,
            version,
            credentials=self.credentials_for(api),
            client_options={"api_endpoint": endpoint} if endpoint else None,
            static_discovery=True,
            cache_discovery=False,
        )

    def identity_token(self, audience: str) -> str:
        """An ID token of the invoker account for `audience` (the service URL).

        Always by impersonation, whatever the credentials (the runner on Cloud Run, an
        operator's user login, an impersonated login): only the invoker holds run.invoker on
        the service, and whoever runs the flow needs roles/iam.serviceAccountTokenCreator on
        the invoker (bootstrap grants it to the runner; see the README).
        """
        if self.endpoint("run") is not None:
            return LOCAL_IDENTITY_TOKEN
        target = impersonated_credentials.Credentials(
            source_credentials=self.credentials_for("run"),
            target_principal=self.invoker,
            target_scopes=[CLOUD_PLATFORM],
        )
        token = impersonated_credentials.IDTokenCredentials(
            target, target_audience=audience, include_email=True
        )
        token.refresh(Request())
        return str(token.token)
