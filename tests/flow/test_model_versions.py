"""Operating model versions on the local backend: list them, roll back to a previous one.

Real Prefect, real training on the tiny model, real `transformers serve` processes: two
versions are trained and kept serving one after the other, so the store holds the history
an operator lists and rolls back through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from core.model_versions import PASSED
from flows.finetune import PipelineResult, finetune_pipeline
from flows.models import ARTIFACT_KEY, main, model_versions
from flows.settings import PipelineSettings
from tasks.backends.local.processes import pid_alive, stop_process_group
from tests.flow.test_pipeline_local import make_settings


@dataclass(frozen=True)
class History:
    store: Path
    settings: PipelineSettings
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
