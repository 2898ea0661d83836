"""The `gcp` backend: the codelab on Cloud Run — a GPU job trains, a GPU service serves.

| part        | implementation                                                        |
|-------------|-----------------------------------------------------------------------|
| provisioner | checks that bootstrap made accounts, bucket, secret, registry (`provision`) |
| bootstrap   | APIs, accounts, bucket, secret, registry, bindings: once, by an admin |
| store       | the bucket, read with listings and ranged reads (`store`)         |
| builder     | Cloud Build → Artifact Registry, tag = content hash (`image`)     |
| runner      | Cloud Run job, 1× L4, bucket mounted at /mnt/store (`job`)         |
| server      | Cloud Run service running vLLM, tagged revisions (`server`)       |
| teardown    | deletes the service; job, images, models on request (`teardown`) |

Building it calls no API and needs no credentials (clients are built on first use), so the
CLI builds it before the flow starts purely to validate: every settings problem surfaces as
one line before anything is created.
"""

from __future__ import annotations

from core.contracts import Backend, ConfigurationError
from tasks.backends.gcp.bootstrap import GcpBootstrap
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.image import CloudBuildImageBuilder
from tasks.backends.gcp.job import CloudRunJobRunner
from tasks.backends.gcp.provision import GcpProvisioner
from tasks.backends.gcp.server import CloudRunModelServer
from tasks.backends.gcp.store import GcsStore
from tasks.backends.gcp.teardown import GcpTeardown


def build_gcp_backend(settings: GcpSettings) -> Backend:
    """Wire the parts around one set of lazily built clients and one retry policy."""
    names, clients, calls = _parts(settings)
    store = GcsStore(clients, names, calls)
    return Backend(
        name="gcp",
        provisioner=GcpProvisioner(clients, names, calls, settings),
        store=store,
        builder=CloudBuildImageBuilder(clients, names, store, calls, settings),
        runner=CloudRunJobRunner(clients, names, store, settings, calls),
        server=CloudRunModelServer(clients, names, store, settings, calls),
        teardown=GcpTeardown(clients, names, calls),
    )


def build_gcp_bootstrap(settings: GcpSettings) -> GcpBootstrap:
    """What `deployments.bootstrap --gcp-project` runs: the admin's half of the rights."""
    names, clients, calls = _parts(settings)
    return GcpBootstrap(clients, names, calls)


def build_gcp_image_builder(settings: GcpSettings, package: str) -> CloudBuildImageBuilder:
    """The training image's builder (same bucket, builder account and retries), pushing to
    package `package` of the registry instead: the orchestrator image (`deploy_gcp`)."""
    names, clients, calls = _parts(settings)
    store = GcsStore(clients, names, calls)
    return CloudBuildImageBuilder(clients, names, store, calls, settings, package=package)


def _parts(settings: GcpSettings) -> tuple[GcpNames, GoogleClients, GoogleCalls]:
    try:
        names = GcpNames.from_settings(settings)
    except ValueError as error:
        raise ConfigurationError(f"{error}: set PIPELINE_GCP__PROJECT or --gcp-project") from None
    clients = GoogleClients(names.project, settings.api_endpoints, invoker=names.invoker_email)
    calls = GoogleCalls(names, settings)  # one retry policy, shared: it knows what was enabled
    return names, clients, calls
