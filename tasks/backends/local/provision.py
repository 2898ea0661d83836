"""Provisioning on one machine: the store's folders are all there is to create."""

from __future__ import annotations

from core.contracts import GpuQuota, LogCallback, ProvisionReport
from tasks.backends.local.store import LocalFolderStore

STORE_DIRS = ("models", "runs", "logs")


class LocalProvisioner:
    """`Provisioner` for the local backend: creates the store's top-level folders."""

    def __init__(self, store: LocalFolderStore) -> None:
        self.store = store

    def ensure(self, on_log: LogCallback) -> ProvisionReport:
        root = self.store.root
        created = tuple(name for name in STORE_DIRS if not (root / name).is_dir())
        for name in created:
            (root / name).mkdir(parents=True)
        on_log(f"store {root}: created {', '.join(created) or 'nothing'}")
        return ProvisionReport(store_uri=self.store.root_uri, created=created)

    def is_ready(self) -> bool:
        return all((self.store.root / name).is_dir() for name in STORE_DIRS)

    def gpu_quota(self) -> GpuQuota | None:
        return None  # this machine's own GPU (or CPU), no cloud quota
