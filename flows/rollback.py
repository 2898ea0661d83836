"""Put a previously passed model version back into service, exactly like a new model: its
folder is verified and gated again, a candidate server starts on it (locally a new process; on
Cloud Run its revision, recreated if Cloud Run dropped it), the smoke test runs against the
candidate, and only then does traffic move. A rejected or incomplete version is refused with
the reason, before anything starts.

    python -m flows.rollback (--to KEY | --previous) [settings options]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import flow, get_run_logger

from core.contracts import ConfigurationError, Endpoint, PipelineError
from core.lineage import model_prefix
from core.model_versions import choose_rollback
from flows.candidate import deploy_and_smoke_test
from flows.cli import as_parameters, build_parser, settings_from_namespace
from flows.models import collect_versions
from flows.parameters import NOTHING_SET, PipelineParameters
from flows.settings import SettingsError
from flows.steps import StepRecorder
from flows.wiring import build_backend
from tasks.quota import check_gpu_quota
from tasks.serve import promote
from tasks.verify import verify


@dataclass(frozen=True)
class RollbackResult:
    """What serves after the rollback, and what served before it."""

    lineage_key: str
    endpoint: Endpoint
    answer: str
    replaced: tuple[str, ...]


@flow(name="emoji-rollback", log_prints=True)
def rollback(
    settings: PipelineParameters = NOTHING_SET, to: str | None = None, previous: bool = False
) -> RollbackResult:
    """Serve a previously passed model version again, smoke-tested before traffic moves.

    Args:
        settings: Which backend and store (and serving, quality settings); empty fields come
            from the worker's PIPELINE_* environment and `.env`, then the defaults.
        to: Lineage key (or a unique prefix of it) of the version to serve.
        previous: Serve the newest passed version older than the one serving now.
    """
    resolved = settings.resolve()
    backend = build_backend(resolved)
    versions = collect_versions(resolved, backend)
    target = choose_rollback(versions, to, previous)
    replaced = tuple(v.key for v in versions if v.serving)
    get_run_logger().info("rolling back to %s (serving now: %s)", target.key, replaced or "none")
    step, prefix = StepRecorder(), model_prefix(target.key)
    step(check_gpu_quota, backend)  # the candidate needs a GPU too
    quality = resolved.quality.model_dump()
    step(verify, backend, prefix, target.key, resolved.serving.smoke_prompt, quality)
    endpoint, smoke = deploy_and_smoke_test(step, backend, resolved, prefix)  # else: unchanged
    step(promote, backend.server, endpoint)
    return RollbackResult(target.key, endpoint, smoke.answer, replaced)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m flows.rollback", "Serve a previously passed model version.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--to", metavar="KEY", help="lineage key (or unique prefix) to serve")
    which.add_argument("--previous", action="store_true", help="the version before the live one")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_namespace(args)
        choose_rollback(collect_versions(settings), args.to, args.previous)  # refuse up front
    except (SettingsError, ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = rollback(as_parameters(settings, args), to=args.to, previous=args.previous)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"serving  {result.lineage_key} at {result.endpoint.base_url} (was: "
          f"{', '.join(result.replaced) or 'nothing'})")  # fmt: skip
    print(f"answer   {result.answer}")
    print(f"stop     {build_backend(settings).server.how_to_stop(result.endpoint)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
