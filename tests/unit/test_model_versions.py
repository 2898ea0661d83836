"""`models list` logic on a real store folder: verdicts, changed settings, serving, ordering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.model_versions import (
    INCOMPLETE,
    PASSED,
    REJECTED,
    ModelVersion,
    format_table,
    list_versions,
    previous_passed,
    serving_newer_generation,
    table_rows,
)
from core.quality_gate import QualityThresholds
from flows.settings import QualitySettings, TrainingSettings
from tasks.backends.local.store import LocalFolderStore

DEFAULTS = TrainingSettings().model_dump(mode="json", exclude={"timeout_s"})
GATE = QualityThresholds(**QualitySettings().model_dump())
GOOD = {
    "eval_loss": 0.1,
    "emoji_only_rate": 0.9,
    "emoji_f1": 0.8,
    "base_eval_loss": 2.0,
    "base_emoji_only_rate": 0.1,
    "base_emoji_f1": 0.1,
    "eval_examples": 50,
}


def seal(store: LocalFolderStore, key: str, completed: str, **changes: Any) -> Path:
    """A model folder as the training job leaves it (manifest last), with its lineage."""
    folder = store.path(f"models/{key}")
    folder.mkdir(parents=True)
    training = {**DEFAULTS, "method": "lora", **changes.pop("training", {})}
    lineage = {
        "base_model": "google/gemma-3-1b-it",
        "base_model_revision": "abc123def4567890",
        "dataset": "data/x.jsonl",
        "dataset_revision": "sha256:" + "f" * 64,
        "training": training,
    }
    manifest = {"lineage_key": key, "lineage": lineage, "completed_at": completed, **changes}
    manifest.setdefault("metrics", GOOD)
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    return folder


def test_versions_show_verdicts_changes_and_what_serves(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    seal(store, "aaaa000000000001", "2026-12-01T10:00:00Z")
    seal(store, "bbbb000000000002", "2026-12-02T10:00:00Z", training={"max_steps": 6})
    rejected = seal(store, "cccc000000000003", "2026-12-03T10:00:00Z")
    (rejected / "REJECTED.json").write_text(json.dumps({"reasons": ["emoji_only_rate 0.1"]}))
    seal(store, "dddd000000000004", "2026-12-04T10:00:00Z", metrics={**GOOD, "eval_loss": 3.0})
    store.path("models/eeee000000000005").mkdir(parents=True)
    (store.path("models/eeee000000000005") / "model.safetensors").write_bytes(b"partial")
    serving = {"bbbb000000000002": "transformers at http://127.0.0.1:1 (pid 1)"}

    versions = list_versions(store, DEFAULTS, GATE, serving)

    assert [v.key[:4] for v in versions] == ["dddd", "cccc", "bbbb", "aaaa", "eeee"]
    verdicts = {v.key[:4]: (v.verdict, v.reasons) for v in versions}
    assert verdicts["aaaa"] == (PASSED, ())
    assert verdicts["cccc"] == (REJECTED, ("emoji_only_rate 0.1",))
    assert verdicts["dddd"][0] == REJECTED and "does not beat the base" in verdicts["dddd"][1][0]
    assert verdicts["eeee"][0] == INCOMPLETE and "MANIFEST.json" in verdicts["eeee"][1][0]
    by_key = {v.key[:4]: v for v in versions}
    assert by_key["aaaa"].changed_settings == {"method": "lora"}
    assert by_key["bbbb"].changed_settings == {"max_steps": 6, "method": "lora"}
    assert [v.key[:4] for v in versions if v.serving] == ["bbbb"]
    # rollback --previous: the newest passed version older than the live one
    assert previous_passed(versions) is by_key["aaaa"]

    rows = table_rows(versions)
    assert rows[2]["settings (≠ defaults)"] == "max_steps=6, method=lora"
    assert rows[2]["eval_loss"] == "0.1 (base 2)"
    assert rows[2]["base model"] == "google/gemma-3-1b-it@abc123def456"
    text = format_table(rows)
    assert text.splitlines()[0].startswith("key") and "rejected: emoji_only_rate 0.1" in text


def test_an_empty_store_lists_nothing_and_has_no_previous(tmp_path: Path) -> None:
    versions = list_versions(LocalFolderStore(tmp_path), DEFAULTS, GATE, {})
    assert versions == [] and previous_passed(versions) is None
    assert format_table(table_rows(versions)) == "no model versions in the store yet"


def test_only_a_serving_newer_generation_of_the_same_gcs_dataset_supersedes() -> None:
    uri = "gs://data/emoji.jsonl"
    serving = ModelVersion(
        key="live", created="t2", dataset=uri, dataset_revision="20", serving="x"
    )
    idle = ModelVersion(key="idle", created="t3", dataset=uri, dataset_revision="30")
    versions = [serving, idle]

    assert serving_newer_generation(lambda: versions, uri, "10") == serving
    assert serving_newer_generation(lambda: versions, uri, "20") is None  # itself, a rerun
    assert serving_newer_generation(lambda: versions, uri, "25") is None  # idle 30 does not count
    assert serving_newer_generation(lambda: versions, "gs://data/other.jsonl", "10") is None

    def unread() -> list[ModelVersion]:
        raise AssertionError("hub and file revisions are not ordered: nothing to read")

    assert serving_newer_generation(unread, "KomeijiForce/Text2Emoji", "abc123") is None
    assert serving_newer_generation(unread, "data/x.jsonl", "sha256:00") is None
