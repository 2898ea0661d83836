"""Build: turn `job_image/` into the training image, addressed by its content hash."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from core.contracts import Backend, ImageRef
from tasks.policy import CACHED_TASK_OPTIONS, Parameters, world_checked


def _wanted(parameters: Parameters) -> ImageRef:
    backend: Backend = parameters["backend"]
    return backend.builder.image_for(parameters["context_dir"])


def _content_hash(parameters: Parameters) -> tuple[str]:
    return (_wanted(parameters).content_hash,)


def _image_exists(parameters: Parameters) -> bool:
    """Deleted from the registry (or the snapshot folder) → build again, whatever the cache."""
    backend: Backend = parameters["backend"]
    return backend.builder.find(_wanted(parameters)) is not None


built_image_key = world_checked("build", _content_hash, _image_exists)


@task(name="build", cache_key_fn=built_image_key, **CACHED_TASK_OPTIONS)
def build_image(backend: Backend, context_dir: Path) -> ImageRef:
    """Skipped when an image with this content hash already exists."""
    logger = get_run_logger()
    image = backend.builder.build(context_dir, on_log=logger.info)
    logger.info("training image %s (%s)", image.uri, image.content_hash)
    return image
