"""Stop what costs money; delete the job, images or models only when asked.

Trained models are kept by default: they are the audit trail of what was served.

    python -m flows.teardown [--delete-job] [--delete-images] [--delete-models]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import flow, get_run_logger

from flows.cli import build_parser, settings_from_namespace
from flows.settings import PipelineSettings, SettingsError, load_settings
from flows.wiring import build_backend


@dataclass(frozen=True)
class TeardownReport:
    stopped_serving: bool
    deleted_job: bool
    deleted_images: int
    deleted_models: int


@flow(name="emoji-teardown", log_prints=True)
def teardown(
    settings: PipelineSettings | None = None,
    delete_job: bool = False,
    delete_images: bool = False,
    delete_models: bool = False,
) -> TeardownReport:
    """Stop the model server; optionally delete the training job, images and models.

    Args:
        settings: Which backend and resources to tear down; unset = environment / defaults.
        delete_job: Also delete the training job definition.
        delete_images: Also delete the training images.
        delete_models: Also delete every trained model version (irreversible).
    """
    settings = settings or load_settings()
    parts, log = build_backend(settings).teardown, get_run_logger().info
    return TeardownReport(
        stopped_serving=parts.stop_serving(log),
        deleted_job=parts.delete_job(log) if delete_job else False,
        deleted_images=parts.delete_images(log) if delete_images else 0,
        deleted_models=parts.delete_models(log) if delete_models else 0,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m flows.teardown", "Stop the model server; delete on request.")
    parser.add_argument("--delete-job", action="store_true", help="delete the training job")
    parser.add_argument("--delete-images", action="store_true", help="delete training images")
    parser.add_argument("--delete-models", action="store_true", help="delete ALL model versions")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_namespace(args)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = teardown(
        settings,
        delete_job=args.delete_job,
        delete_images=args.delete_images,
        delete_models=args.delete_models,
    )
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
