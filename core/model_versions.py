"""Every model version in the store, as an operator compares them: pure reads, no Prefect.

A version is one `models/<lineage-key>/` folder. What is known about it comes from the folder
itself — `MANIFEST.json` (lineage, metrics, timestamps; written last, so a folder without it
is incomplete) and `REJECTED.json` (written when the quality gate refused the model; a JSON
object with at least `reasons: [str]`). A sealed folder without that marker is judged by
today's gate thresholds, so versions trained before markers existed still get a verdict.
The backends only add which version serves now (`ServingLookup`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.contracts import ArtifactStore, ConfigurationError
from core.dataset_events import is_gcs_uri
from core.lineage import MODELS_PREFIX, model_prefix
from core.quality_gate import QualityThresholds, quality_problems

MANIFEST = "MANIFEST.json"
REJECTED_MARKER = "REJECTED.json"
PASSED, REJECTED, INCOMPLETE = "passed", "rejected", "incomplete"
# Held-out metrics shown beside the base model's score on the same rows (`base_<name>`).
COMPARED_METRICS = ("eval_loss", "emoji_only_rate", "emoji_f1")


@dataclass(frozen=True)
class ModelVersion:
    """One model version as `models list` shows it; `serving` is "" unless it serves now."""

    key: str
    created: str
    base_model: str = ""
    base_model_revision: str = ""
    dataset: str = ""
    dataset_revision: str = ""
    changed_settings: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    verdict: str = INCOMPLETE
    reasons: tuple[str, ...] = ()
    serving: str = ""

    @property
    def servable(self) -> bool:
        return self.verdict == PASSED


def version_keys(store: ArtifactStore) -> list[str]:
    """Lineage keys of every folder under `models/` (complete or not), sorted."""
    return sorted(
        {name.split("/", 1)[0] for name in store.list_files(MODELS_PREFIX) if "/" in name}
    )


def read_json(store: ArtifactStore, path: str) -> dict[str, Any] | None:
    """A JSON object from the store; None when absent or not an object."""
    try:
        value = json.loads(store.read_bytes(path))
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def changed_settings(training: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings that differ from today's defaults (the resolved method always shows:
    the default `auto` is never what ran)."""
    return {
        name: value
        for name, value in sorted(training.items())
        if name == "method" or _normalised(value) != _normalised(defaults.get(name))
    }


def _normalised(value: object) -> object:
    return list(value) if isinstance(value, tuple | list) else value


def read_version(
    store: ArtifactStore,
    key: str,
    defaults: Mapping[str, Any],
    thresholds: QualityThresholds,
    serving: Mapping[str, str],
) -> ModelVersion:
    """What the folder of `key` says about itself, with the gate's verdict."""
    prefix = model_prefix(key)
    manifest = read_json(store, f"{prefix}/{MANIFEST}")
    where = serving.get(key, "")
    if manifest is None:
        reason = "no MANIFEST.json: training did not finish (the folder is never served)"
        return ModelVersion(key=key, created="", reasons=(reason,), serving=where)
    lineage = manifest.get("lineage") or {}
    metrics = manifest.get("metrics") or {}
    marker = read_json(store, f"{prefix}/{REJECTED_MARKER}")
    if marker is not None:
        reasons = tuple(str(r) for r in marker.get("reasons") or ["marked rejected"])
    else:
        reasons = tuple(quality_problems(metrics, thresholds))
    return ModelVersion(
        key=key,
        created=str(manifest.get("completed_at") or manifest.get("created_at") or ""),
        base_model=str(lineage.get("base_model", "")),
        base_model_revision=str(lineage.get("base_model_revision", "")),
        dataset=str(lineage.get("dataset", "")),
        dataset_revision=str(lineage.get("dataset_revision", "")),
        changed_settings=changed_settings(lineage.get("training") or {}, defaults),
        metrics=metrics,
        verdict=REJECTED if reasons else PASSED,
        reasons=reasons,
        serving=where,
    )


def list_versions(
    store: ArtifactStore,
    defaults: Mapping[str, Any],
    thresholds: QualityThresholds,
    serving: Mapping[str, str],
) -> list[ModelVersion]:
    """Every version, newest first (incomplete ones, which have no date, last)."""
    versions = [read_version(store, k, defaults, thresholds, serving) for k in version_keys(store)]
    return sorted(versions, key=lambda v: (v.created != "", v.created), reverse=True)


def previous_passed(versions: Iterable[ModelVersion]) -> ModelVersion | None:
    """The newest passed version older than the one serving now (or the newest passed one
    when nothing serves): what `rollback --previous` puts back."""
    ordered = list(versions)
    live = next((v for v in ordered if v.serving), None)
    return next(
        (
            v
            for v in ordered
            if v.servable and not v.serving and (live is None or v.created < live.created)
        ),
        None,
    )


def serving_newer_generation(
    read_versions: Callable[[], Iterable[ModelVersion]], dataset: str, revision: str
) -> ModelVersion | None:
    """The serving version trained on a newer generation of the same GCS dataset, if any.

    Two uploads close together start two runs, and Prefect may create (and so run) them in
    either order; the run on the older generation can end last. Its model must not replace
    the newer one: the pipeline only moves forward (`rollback` moves back). Only GCS
    generations are ordered; hub commits and content hashes are not, so they never supersede
    (and `read_versions`, which reads the store and the server, is not called for them).
    """
    if not (is_gcs_uri(dataset) and revision.isdigit()):
        return None
    return next(
        (
            v
            for v in read_versions()
            if v.serving
            and v.dataset == dataset
            and v.dataset_revision.isdigit()
            and int(v.dataset_revision) > int(revision)
        ),
        None,
    )


def _score(metrics: Mapping[str, Any], name: str) -> str:
    value = metrics.get(name)
    if not isinstance(value, int | float):
        return "-"
    base = metrics.get(f"base_{name}")
    shown = f"{value:.3g}"
    return f"{shown} (base {base:.3g})" if isinstance(base, int | float) else shown


def _short(revision: str) -> str:
    return revision.removeprefix("sha256:")[:12]


def table_rows(versions: Iterable[ModelVersion]) -> list[dict[str, str]]:
    """One flat row per version: the Prefect table artifact and the CLI print the same."""
    return [_row(version) for version in versions]


def _row(v: ModelVersion) -> dict[str, str]:
    settings = ", ".join(f"{name}={_fmt(value)}" for name, value in v.changed_settings.items())
    return {
        "key": v.key,
        "created": v.created or "-",
        "base model": f"{v.base_model}@{_short(v.base_model_revision)}" if v.base_model else "-",
        "dataset": f"{v.dataset}@{_short(v.dataset_revision)}" if v.dataset else "-",
        "settings (≠ defaults)": settings or "-",
        **{name: _score(v.metrics, name) for name in COMPARED_METRICS},
        "verdict": v.verdict + (f": {'; '.join(v.reasons)}" if v.reasons else ""),
        "serving": v.serving or "-",
    }


def _fmt(value: object) -> str:
    if isinstance(value, list | tuple):
        return "+".join(str(part) for part in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict[str, str]]) -> str:
    """A plain-text table for the terminal (columns as wide as their widest cell)."""
    if not rows:
        return "no model versions in the store yet"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def choose_rollback(versions: list[ModelVersion], to: str | None, previous: bool) -> ModelVersion:
    """The version `rollback` may serve, or a ConfigurationError saying why not.

    `to` may be a unique prefix of a lineage key. Only a passed version is ever put back: a
    rejected one failed the gate, an incomplete one has no sealed weights.
    """
    if (to is None) == (not previous):
        raise ConfigurationError("rollback: give exactly one of --to KEY or --previous")
    if to is not None:
        matches = [v for v in versions if v.key.startswith(to)]
        if len(matches) != 1:
            found = "no" if not matches else f"{len(matches)}"
            raise ConfigurationError(
                f"rollback --to {to}: {found} model versions match; "
                "`python -m flows.models list` shows every key"
            )
        target = matches[0]
    else:
        candidate = previous_passed(versions)
        if candidate is None:
            raise ConfigurationError(
                "rollback --previous: no passed version older than the serving one; "
                "`python -m flows.models list` shows every version and its verdict"
            )
        target = candidate
    if target.verdict != PASSED:
        raise ConfigurationError(
            f"rollback: version {target.key} is {target.verdict} ({'; '.join(target.reasons)}) "
            "and is never served; pick a passed version from `python -m flows.models list`"
        )
    if target.serving:
        raise ConfigurationError(
            f"rollback: version {target.key} already serves ({target.serving}); nothing to do"
        )
    return target
