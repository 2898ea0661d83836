"""Operating model versions on the local backend: list them, roll back to a previous one.

Real Prefect, real training on the tiny model, real `transformers serve` processes: two
versions are trained and kept serving one after the other, so the store holds the history
an operator lists and rolls back through.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import emoji
import pytest
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from core.model_versions import PASSED
from flows import rollback as rollback_cli
from flows.finetune import PipelineResult, finetune_pipeline
from flows.models import ARTIFACT_KEY, main, model_versions
from flows.parameters import PipelineParameters
from flows.rollback import rollback
from tasks.backends.local.processes import pid_alive, stop_process_group
from tasks.backends.local.server import LocalModelServer
from tasks.backends.local.store import LocalFolderStore
from tests.flow.test_pipeline_local import make_settings

pytestmark = pytest.mark.slow  # two trained versions per module: make test-slow (CI runs it)


@dataclass(frozen=True)
class History:
    store: Path
    settings: PipelineParameters
    older: PipelineResult
    newer: PipelineResult


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, sample_dataset_path: Path
) -> Iterator[History]:
    store = tmp_path_factory.mktemp("versions") / "store"
    kept = {"keep_serving": True}
    settings = make_settings(store, tiny_model_dir, sample_dataset_path, serving=kept)
    retuned = make_settings(
        store, tiny_model_dir, sample_dataset_path, serving=kept, training={"lora_r": 8}
    )
    with prefect_test_harness(server_startup_timeout=90):
        older = finetune_pipeline(settings)
        newer = finetune_pipeline(retuned)
        try:
            yield History(store, settings, older, newer)
        finally:
            live = json.loads((store / "serving.json").read_text())["server_id"]
            for pid in {older.endpoint.server_id, newer.endpoint.server_id, live}:
                stop_process_group(int(pid))


def test_models_list_shows_every_version_and_the_serving_one(
    history: History, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pid_alive(int(history.newer.endpoint.server_id))

    versions = model_versions(history.settings)

    by_key = {v.key: v for v in versions}
    assert set(by_key) == {history.older.lineage_key, history.newer.lineage_key}
    assert all(v.verdict == PASSED for v in versions)
    assert by_key[history.newer.lineage_key].serving.startswith("transformers at http://")
    assert by_key[history.older.lineage_key].serving == ""
    assert by_key[history.newer.lineage_key].changed_settings["lora_r"] == 8
    assert "lora_r" not in by_key[history.older.lineage_key].changed_settings
    artifact = Artifact.get(ARTIFACT_KEY)
    assert artifact is not None and artifact.type == "table"
    rows = json.loads(str(artifact.data))
    assert [row["key"] for row in rows] == [history.newer.lineage_key, history.older.lineage_key]

    # The CLI judges unmarked versions by the gate the environment configures, like a worker.
    monkeypatch.setenv("PIPELINE_QUALITY__MAX_LOSS_REGRESSION", "0.1")
    assert main(["list", "--store", str(history.store)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:3] == ["key", "created", "base"]
    serving_line = next(line for line in printed if history.newer.lineage_key in line)
    assert "transformers at http://" in serving_line and "passed" in serving_line


def live_model(store: Path) -> str | None:
    server = LocalModelServer(LocalFolderStore(store), "transformers", "127.0.0.1", 0)
    live = server.live()
    prefix = server.served_prefix(live) if live is not None else None
    return prefix.rsplit("/", 1)[-1] if prefix else None


def test_rollback_refuses_rejected_and_incomplete_versions_with_the_reason(
    history: History, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_QUALITY__MAX_LOSS_REGRESSION", "0.1")
    models = history.store / "models"
    rejected, partial = models / "deadbeef00000000", models / "feedface00000000"
    shutil.copytree(models / history.older.lineage_key, rejected)
    (rejected / "REJECTED.json").write_text(json.dumps({"reasons": ["emoji_only_rate 0.2 < 0.5"]}))
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half-written")
    serving_before = live_model(history.store)
    try:
        for key, reason in [("deadbeef", "rejected (emoji_only_rate 0.2 < 0.5)"),
                            ("feedface", "incomplete (no MANIFEST.json"),
                            ("0000", "no model versions match")]:  # fmt: skip
            assert rollback_cli.main(["--to", key, "--store", str(history.store)]) == 2
            error = capsys.readouterr().err.strip().splitlines()
            assert len(error) == 1 and reason in error[0], error
        assert live_model(history.store) == serving_before, "a refusal changes nothing"
    finally:
        shutil.rmtree(rejected)
        shutil.rmtree(partial)


def test_rollback_previous_serves_the_older_version_after_its_smoke_test(
    history: History,
) -> None:
    assert live_model(history.store) == history.newer.lineage_key

    result = rollback(history.settings, previous=True)

    try:
        assert result.lineage_key == history.older.lineage_key
        assert result.replaced == (history.newer.lineage_key,)
        assert emoji.emoji_count(result.answer) > 0
        assert live_model(history.store) == history.older.lineage_key
        assert pid_alive(int(result.endpoint.server_id))
        assert not pid_alive(int(history.newer.endpoint.server_id)), "the old server retired"
        versions = {v.key: v for v in model_versions(history.settings)}
        assert versions[history.older.lineage_key].serving.startswith("transformers at")
        assert versions[history.newer.lineage_key].serving == ""
    finally:
        stop_process_group(int(result.endpoint.server_id))
