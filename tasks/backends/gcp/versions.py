"""Which model versions the Cloud Run service serves: its traffic split, read only.

Revision names carry the first 8 characters of the lineage key (`specs.revision_name`), so a
revision with traffic maps back to its model version without reading the revision itself.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import run_v2

from core.model_versions import version_keys
from tasks.backends.gcp.server import LATEST, CloudRunModelServer


class CloudRunServingLookup:
    """`ServingLookup` over the service's traffic targets (one GET)."""

    def __init__(self, server: CloudRunModelServer) -> None:
        self.server = server

    def traffic(self) -> dict[str, int]:
        """Revision → percent of traffic, for revisions that get some ({} with no service)."""
        names = self.server.names

        def read() -> run_v2.Service | None:
            try:
                return self.server.clients.services.get_service(name=names.service)
            except gexc.NotFound:
                return None

        service = self.server.calls.call("read", f"service {names.service_id}", read)
        return {} if service is None else _split(service)

    def serving(self) -> dict[str, str]:
        split = self.traffic()
        if not split:
            return {}
        service_id = self.server.names.service_id
        found = {}
        for key in version_keys(self.server.store):
            for revision, percent in split.items():
                if revision.startswith(f"{service_id}-{key[:8]}-"):
                    found[key] = f"{percent}% of service {service_id} (revision {revision})"
        return found


def _split(service: run_v2.Service) -> dict[str, int]:
    split: dict[str, int] = {}
    for target in service.traffic:
        revision = service.latest_ready_revision if target.type_ == LATEST else target.revision
        if target.percent > 0 and revision:
            name = revision.rsplit("/", 1)[-1]
            split[name] = split.get(name, 0) + target.percent
    return split
