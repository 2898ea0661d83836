"""The training "image" of the local backend: a content-addressed snapshot of `job_image/`."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.contracts import ImageRef, LogCallback
from core.hashing import sha256_tree, tree_files
from tasks.backends.local.store import LocalFolderStore

IMAGES_PREFIX = "images"
DIGEST_CHARS = 16


class LocalImageBuilder:
    """Snapshots `job_image/` into `images/<digest>/`, so a trained model always matches the
    exact code recorded in its lineage even if the checkout changes mid-run."""

    def __init__(self, store: LocalFolderStore) -> None:
        self.store = store

    def image_for(self, context_dir: Path) -> ImageRef:
        digest = "sha256:" + sha256_tree(context_dir)
        folder = self.store.path(f"{IMAGES_PREFIX}/{digest.removeprefix('sha256:')[:DIGEST_CHARS]}")
        return ImageRef(uri=str(folder), content_hash=digest)

    def find(self, image: ImageRef) -> ImageRef | None:
        folder = Path(image.uri)
        intact = folder.is_dir() and "sha256:" + sha256_tree(folder) == image.content_hash
        return image if intact else None

    def build(self, context_dir: Path, on_log: LogCallback) -> ImageRef:
        image = self.image_for(context_dir)
        if self.find(image) is not None:
            on_log(f"image {image.content_hash[:23]} already built at {image.uri}")
            return image
        target = Path(image.uri)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        for source in tree_files(context_dir):
            destination = staging / source.relative_to(context_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        on_log(f"image {image.content_hash[:23]} built at {image.uri}")
        return ImageRef(uri=image.uri, content_hash=image.content_hash)
