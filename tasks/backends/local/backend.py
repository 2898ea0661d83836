"""The `local` backend: the whole pipeline on one machine, no cloud account needed.

A folder stands in for the bucket, a content-addressed copy of `job_image/` for the
container image, a subprocess for the Cloud Run job and a loopback server for the service.
"""

from __future__ import annotations

from pathlib import Path

from core.contracts import Backend
from tasks.backends.local.image import LocalImageBuilder
from tasks.backends.local.job import LocalJobRunner
from tasks.backends.local.provision import LocalProvisioner
from tasks.backends.local.server import LocalModelServer
from tasks.backends.local.store import LocalFolderStore
from tasks.backends.local.teardown import LocalTeardown


def build_local_backend(root: Path, engine: str, host: str, port: int) -> Backend:
    store = LocalFolderStore(root)
    server = LocalModelServer(store, engine=engine, host=host, port=port)
    return Backend(
        name="local",
        provisioner=LocalProvisioner(store),
        store=store,
        builder=LocalImageBuilder(store),
        runner=LocalJobRunner(store),
        server=server,
        teardown=LocalTeardown(store, server),
    )
