"""What the local backend's store already has (plan mode): its folders, nothing else."""

from __future__ import annotations

from core.contracts import ResourceState
from tasks.backends.local.provision import STORE_DIRS
from tasks.backends.local.store import LocalFolderStore


class LocalInventory:
    """`Inventory` of the store folder: `provision` creates what is missing here."""

    def __init__(self, store: LocalFolderStore) -> None:
        self.store = store

    def resources(self) -> list[ResourceState]:
        return [
            ResourceState("folder", str(self.store.root / name), (self.store.root / name).is_dir())
            for name in STORE_DIRS
        ]
