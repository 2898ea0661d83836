"""The one place that turns settings into a backend (`local` or `gcp`)."""

from __future__ import annotations

from core.contracts import Backend, ConfigurationError, Inventory, ServingLookup
from flows.settings import PipelineSettings


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
    return GcpInventory(provisioner.clients, provisioner.names)  # type: ignore[attr-defined]
