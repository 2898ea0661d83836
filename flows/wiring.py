"""The one place that turns settings into a backend (`local` or `gcp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.contracts import Backend, ConfigurationError, Inventory, ServingLookup
from flows.settings import PipelineSettings

if TYPE_CHECKING:
    from tasks.backends.gcp.events import DatasetSubscription


def build_backend(settings: PipelineSettings) -> Backend:
    if settings.backend == "local":
        from tasks.backends.local.backend import build_local_backend

        serving = settings.serving
        return build_local_backend(
            settings.local.root, engine=serving.engine, host=serving.host, port=serving.port
        )
    try:  # Google's client libraries are an optional extra: only gcp runs need them
        from tasks.backends.gcp.backend import build_gcp_backend
    except ImportError as error:
        raise ConfigurationError(
            f"backend 'gcp' needs the gcp extra ({error.name} is missing): pip install -e '.[gcp]'"
        ) from None
    return build_gcp_backend(settings.gcp)


def build_serving_lookup(backend: Backend) -> ServingLookup:
    """Which version serves now, read from the backend's own server (a read-only view)."""
    if backend.name == "local":
        from tasks.backends.local.versions import LocalServingLookup

        return LocalServingLookup(backend.server)  # type: ignore[arg-type]
    from tasks.backends.gcp.versions import CloudRunServingLookup

    return CloudRunServingLookup(backend.server)  # type: ignore[arg-type]


def build_inventory(backend: Backend) -> Inventory:
    """What of the backend's infrastructure exists (plan mode); reads only."""
    if backend.name == "local":
        from tasks.backends.local.inventory import LocalInventory

        return LocalInventory(backend.store)  # type: ignore[arg-type]
    from tasks.backends.gcp.inventory import GcpInventory

    provisioner = backend.provisioner
    return GcpInventory(provisioner.clients, provisioner.names, provisioner.calls)  # type: ignore[attr-defined]


def build_dataset_subscription(project: str, subscription: str) -> DatasetSubscription:
    """The Pub/Sub subscription of the dataset bucket's notifications (gcp extra)."""
    from tasks.backends.gcp.events import DatasetSubscription

    return DatasetSubscription(project, subscription)


def pin_gcs_generation(settings: PipelineSettings, uri: str, requested: str | None) -> str:
    """The object generation a `gs://` dataset trains on (gcp extra; reads only)."""
    try:
        from tasks.backends.gcp.clients import GoogleClients
        from tasks.backends.gcp.events import pinned_generation
    except ImportError as error:
        raise ConfigurationError(
            f"data.dataset: a gs:// dataset needs the gcp extra ({error.name} is missing); "
            "pip install -e '.[gcp]'"
        ) from None
    gcp = settings.gcp  # object reads name the bucket; the project only labels the client
    clients = GoogleClients(gcp.project or "unset", gcp.api_endpoints, invoker="")
    return pinned_generation(clients.storage, uri, requested)
