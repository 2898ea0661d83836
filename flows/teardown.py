"""Stop what costs money; delete the job, images or models only when asked.

Trained models are kept by default: they are the audit trail of what was served.

    python -m flows.teardown [--delete-job] [--delete-images] [--delete-models]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import flow, get_run_logger

from flows.cli import as_parameters, build_parser, settings_from_namespace
from flows.parameters import NOTHING_SET, PipelineParameters
from flows.settings import SettingsError
from flows.wiring import build_backend

# The settings that say *what* to tear down; training and serving options do not apply.
TEARDOWN_SECTIONS = ("backend", "local", "gcp")


@dataclass(frozen=True)
class TeardownReport:
    stopped_serving: bool
    deleted_job: bool
    deleted_images: int
    deleted_models: int

    def summary(self) -> str:
        """What an operator reads after a teardown: one line per kind of resource."""
        return "\n".join(
            [
                "stopped the model server"
                if self.stopped_serving
                else "no model server was running",
                "deleted the training job" if self.deleted_job else "training job kept",
                f"deleted {self.deleted_images} training image(s)",
                f"deleted {self.deleted_models} model version(s)",
            ]
        )


@flow(name="emoji-teardown", log_prints=True)
def teardown(
    settings: PipelineParameters = NOTHING_SET,
    delete_job: bool = False,
    delete_images: bool = False,
    delete_models: bool = False,
) -> TeardownReport:
    """Stop the model server; optionally delete the training job, images and models.

    Args:
        settings: Which backend and resources to tear down; empty fields come from the
            worker's PIPELINE_* environment and `.env`, then the defaults.
        delete_job: Also delete the training job definition.
        delete_images: Also delete the training images.
        delete_models: Also delete every trained model version (irreversible).
    """
    parts, log = build_backend(settings.resolve()).teardown, get_run_logger().info
    return TeardownReport(
        stopped_serving=parts.stop_serving(log),
        deleted_job=parts.delete_job(log) if delete_job else False,
        deleted_images=parts.delete_images(log) if delete_images else 0,
        deleted_models=parts.delete_models(log) if delete_models else 0,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "python -m flows.teardown",
        "Stop the model server; delete the job, images or models only when asked.",
        sections=TEARDOWN_SECTIONS,
    )
    parser.add_argument("--delete-job", action="store_true", help="delete the training job")
    parser.add_argument("--delete-images", action="store_true", help="delete training images")
    parser.add_argument("--delete-models", action="store_true", help="delete ALL model versions")
    args = parser.parse_args(argv)
    try:
        parameters = as_parameters(settings_from_namespace(args), args)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = teardown(
        parameters,
        delete_job=args.delete_job,
        delete_images=args.delete_images,
        delete_models=args.delete_models,
    )
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
