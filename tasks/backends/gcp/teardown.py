"""Teardown of the `gcp` backend: delete the service; the job, images and models on request.

An idle service already costs nothing (it scales to zero), so `stop_serving` deletes it to
take the endpoint down. What provisioning created for every run — bucket, secret, account,
registry, bindings — stays: it is cheap, shared, and recreating it is the slow part of a run.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc

from core.contracts import LogCallback
from core.lineage import MODELS_PREFIX
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames
from tasks.backends.gcp.errors import google_call

OPERATION_TIMEOUT_S = 300.0


class GcpTeardown:
    """`Teardown` over the Cloud Run service and job, the image package and `models/`."""

    def __init__(self, clients: GoogleClients, names: GcpNames) -> None:
        self.clients = clients
        self.names = names

    def stop_serving(self, on_log: LogCallback) -> bool:
        with google_call(self.names, "delete", f"service {self.names.service_id}"):
            try:
                self.clients.services.delete_service(name=self.names.service).result(
                    timeout=OPERATION_TIMEOUT_S
                )
            except gexc.NotFound:
                on_log(f"service {self.names.service_id} does not exist; nothing serves")
                return False
        on_log(f"deleted service {self.names.service_id}: the endpoint is gone")
        return True

    def delete_job(self, on_log: LogCallback) -> bool:
        with google_call(self.names, "delete", f"job {self.names.job_id}"):
            try:
                self.clients.jobs.delete_job(name=self.names.job).result(
                    timeout=OPERATION_TIMEOUT_S
                )
            except gexc.NotFound:
                on_log(f"job {self.names.job_id} does not exist")
                return False
        on_log(f"deleted job {self.names.job_id}")
        return True

    def delete_images(self, on_log: LogCallback) -> int:
        """Delete the training image package (every content-hash tag and its layers)."""
        package = f"{self.names.repository}/packages/{self.names.job_id}"
        with google_call(self.names, "delete", f"images {package}"):
            try:
                tags = list(self.clients.registry.list_tags(parent=package))
                self.clients.registry.delete_package(name=package).result(
                    timeout=OPERATION_TIMEOUT_S
                )
            except gexc.NotFound:
                tags = []
        on_log(f"deleted {len(tags)} training image(s) from {self.names.repository_id}")
        return len(tags)

    def delete_models(self, on_log: LogCallback) -> int:
        bucket = self.clients.storage.bucket(self.names.bucket)
        with google_call(self.names, "delete", f"gs://{self.names.bucket}/{MODELS_PREFIX}/"):
            blobs = list(self.clients.storage.list_blobs(bucket, prefix=f"{MODELS_PREFIX}/"))
            for blob in blobs:
                blob.delete()
        versions = {b.name.split("/")[1] for b in blobs if b.name.endswith("/MANIFEST.json")}
        on_log(f"deleted {len(versions)} model version(s) under gs://{self.names.bucket}/models/")
        return len(versions)
