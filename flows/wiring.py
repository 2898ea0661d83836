"""The one place that turns settings into a backend (`local` or `gcp`)."""

from __future__ import annotations

from flows.settings import PipelineSettings
from tasks.backends.base import Backend, ConfigurationError


def build_backend(settings: PipelineSettings) -> Backend:
    if settings.backend == "local":
        from tasks.backends.local import build_local_backend

        serving = settings.serving
        return build_local_backend(
            settings.local.root, engine=serving.engine, host=serving.host, port=serving.port
        )
    raise ConfigurationError(
        "backend 'gcp' is not available in this version yet; use backend=local"
    )
