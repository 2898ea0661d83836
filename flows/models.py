"""Every model version in the store: lineage, settings, metrics beside the base's, the gate's
verdict, and which one serves now. Reads only, on either backend.

    python -m flows.models list [settings options]

The `emoji-models` deployment runs `model_versions` and publishes the same table as a Prefect
table artifact (key `model-versions`), so the UI shows the history of every version.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prefect import flow
from prefect.artifacts import create_table_artifact

from core.contracts import Backend, ConfigurationError, PipelineError
from core.model_versions import ModelVersion, format_table, list_versions, table_rows
from core.quality_gate import QualityThresholds
from flows.cli import build_parser, settings_from_namespace
from flows.parameters import NOTHING_SET, PipelineParameters
from flows.settings import PipelineSettings, SettingsError, TrainingSettings
from flows.wiring import build_backend, build_serving_lookup

ARTIFACT_KEY = "model-versions"


def collect_versions(
    settings: PipelineSettings, backend: Backend | None = None
) -> list[ModelVersion]:
    """Read the store and the live server; no Prefect needed (the CLI stays fast)."""
    backend = backend or build_backend(settings)
    defaults = TrainingSettings().model_dump(mode="json", exclude={"timeout_s"})
    thresholds = QualityThresholds(**settings.quality.model_dump())
    serving = build_serving_lookup(backend).serving()
    return list_versions(backend.store, defaults, thresholds, serving)


@flow(name="emoji-models", log_prints=True)
def model_versions(settings: PipelineParameters = NOTHING_SET) -> list[ModelVersion]:
    """Publish every model version in the store as a table artifact (reads only).

    Args:
        settings: Which backend and store to read; empty fields come from the worker's
            PIPELINE_* environment and `.env`, then the defaults.
    """
    versions = collect_versions(settings.resolve())
    rows = table_rows(versions)
    serving = next((v.key for v in versions if v.serving), "none")
    create_table_artifact(
        rows, key=ARTIFACT_KEY, description=f"{len(rows)} model version(s); serving: {serving}"
    )
    print(format_table(rows))
    return versions


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m flows.models", "List the model versions in the store.")
    parser.add_argument("command", choices=["list"], help="list: every version, newest first")
    args = parser.parse_args(argv)
    try:
        versions = collect_versions(settings_from_namespace(args))
    except (SettingsError, ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_table(table_rows(versions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
