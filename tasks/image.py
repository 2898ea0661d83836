"""Build: turn `job_image/` into the training image, addressed by its content hash."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from core.contracts import ImageBuilder, ImageRef
from tasks.policy import CACHED_TASK_OPTIONS


@task(name="build-image", **CACHED_TASK_OPTIONS)
def build_image(builder: ImageBuilder, context_dir: Path, cache_key: str) -> ImageRef:
    """Skipped when an image with this content hash already exists."""
    logger = get_run_logger()
    image = builder.build(context_dir, on_log=logger.info)
    logger.info("training image %s (%s)", image.uri, image.digest)
    return image
