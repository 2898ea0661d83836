"""Teardown of the `local` backend: stop the kept server, delete snapshots or models on request."""

from __future__ import annotations

import shutil

from core.contracts import LogCallback
from core.lineage import MODELS_PREFIX
from tasks.backends.local.image import IMAGES_PREFIX
from tasks.backends.local.server import LocalModelServer
from tasks.backends.local.store import LocalFolderStore


class LocalTeardown:
    """`Teardown` over the store folder and the server recorded in `serving.json`."""

    def __init__(self, store: LocalFolderStore, server: LocalModelServer) -> None:
        self.store = store
        self.server = server

    def stop_serving(self, on_log: LogCallback) -> bool:
        live = self.server.live()
        if live is None:
            self.server.state_path.unlink(missing_ok=True)  # a stale record of a dead server
            on_log("no local server is running")
            return False
        self.server.release(live)
        on_log(f"stopped the {live.engine} server at {live.base_url} (pid {live.server_id})")
        return True

    def delete_job(self, on_log: LogCallback) -> bool:
        on_log("the local backend has no job definition to delete (it runs a subprocess)")
        return False

    def delete_images(self, on_log: LogCallback) -> int:
        return self._delete_children(IMAGES_PREFIX, "image snapshot", on_log)

    def delete_models(self, on_log: LogCallback) -> int:
        return self._delete_children(MODELS_PREFIX, "model version", on_log)

    def _delete_children(self, prefix: str, what: str, on_log: LogCallback) -> int:
        folder = self.store.path(prefix)
        children = sorted(folder.iterdir()) if folder.is_dir() else []
        for child in children:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        on_log(f"deleted {len(children)} {what}(s) under {folder}")
        return len(children)
