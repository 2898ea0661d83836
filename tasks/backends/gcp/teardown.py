"""Teardown of the `gcp` backend: delete the service; the job, images and models on request.

An idle service already costs nothing (it scales to zero), so `stop_serving` deletes it to
take the endpoint down. What provisioning created for every run — bucket, secret, account,
registry, bindings — stays: it is cheap, shared, and recreating it is the slow part of a run.
"""

from __future__ import annotations

import contextlib

from google.api_core import exceptions as gexc
from google.cloud import storage

from core.contracts import LogCallback
from core.lineage import MODELS_PREFIX
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames

OPERATION_TIMEOUT_S = 300.0


class GcpTeardown:
    """`Teardown` over the Cloud Run service and job, the image package and `models/`."""

    def __init__(self, clients: GoogleClients, names: GcpNames, calls: GoogleCalls) -> None:
        self.clients = clients
        self.names = names
        self.calls = calls

    def stop_serving(self, on_log: LogCallback) -> bool:
        if not delete_service(self.clients, self.names, self.calls):
            on_log(f"service {self.names.service_id} does not exist; nothing serves")
            return False
        on_log(f"deleted service {self.names.service_id}: the endpoint is gone")
        return True

    def delete_job(self, on_log: LogCallback) -> bool:
        def delete() -> bool:
            try:
                self.clients.jobs.delete_job(name=self.names.job).result(
                    timeout=OPERATION_TIMEOUT_S
                )
            except gexc.NotFound:  # absent, or deleted by an attempt whose answer was lost
                return False
            return True

        if not self.calls.call("delete", f"job {self.names.job_id}", delete):
            on_log(f"job {self.names.job_id} does not exist")
            return False
        on_log(f"deleted job {self.names.job_id}")
        return True

    def delete_images(self, on_log: LogCallback) -> int:
        """Delete the training image package (every tag and its layers); counts images, not tags
        (a code image has two tags, and its dependencies image is in the same package)."""
        package = f"{self.names.repository}/packages/{self.names.job_id}"

        def delete() -> set[str]:
            try:
                versions = {str(t.version) for t in self.clients.registry.list_tags(parent=package)}
                self.clients.registry.delete_package(name=package).result(
                    timeout=OPERATION_TIMEOUT_S
                )
            except gexc.NotFound:
                return set()
            return versions

        images = len(self.calls.call("delete", f"images {package}", delete))
        on_log(f"deleted {images} training image(s) from {self.names.repository_id}")
        return images

    def delete_models(self, on_log: LogCallback) -> int:
        bucket = self.clients.storage.bucket(self.names.bucket)

        def delete() -> list[storage.Blob]:
            blobs = list(self.clients.storage.list_blobs(bucket, prefix=f"{MODELS_PREFIX}/"))
            for blob in blobs:
                with contextlib.suppress(gexc.NotFound):  # gone with an earlier attempt
                    blob.delete()
            return blobs

        blobs = self.calls.call("delete", f"gs://{self.names.bucket}/{MODELS_PREFIX}/", delete)
        versions = {b.name.split("/")[1] for b in blobs if b.name.endswith("/MANIFEST.json")}
        on_log(f"deleted {len(versions)} model version(s) under gs://{self.names.bucket}/models/")
        return len(versions)


def delete_service(clients: GoogleClients, names: GcpNames, calls: GoogleCalls) -> bool:
    """Delete the Cloud Run service; False when there was none. Shared with the server, which
    deletes a brand-new service whose only revision failed (nothing failed stays reachable)."""

    def delete() -> bool:
        try:
            clients.services.delete_service(name=names.service).result(timeout=OPERATION_TIMEOUT_S)
        except gexc.NotFound:
            return False
        return True

    return calls.call("delete", f"service {names.service_id}", delete)
