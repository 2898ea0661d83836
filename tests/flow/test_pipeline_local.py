"""The whole flow on the local backend: real Prefect, real training, a real model server.

One Prefect test server for the module; each test gets its own store folder, and all share
one tiny base model, so the file runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import emoji
import pytest
from openai import OpenAI
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from core.contracts import VerificationFailed
from flows.finetune import PipelineResult, finetune_pipeline
from flows.parameters import PipelineParameters
from flows.settings import CODELAB_PROMPT
from tasks.backends.local.processes import pid_alive, stop_process_group
from tests.conftest import REPO_ROOT

CACHED_STEPS = ("build", "train", "verify")


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=90):
        yield


def make_settings(
    store: Path, base_model: Path, dataset: Path, **overrides: object
) -> PipelineParameters:
    # 20 steps at the demo's rate: enough for the untuned tiny base to learn to answer in emoji.
    training = {"max_steps": 20, "batch_size": 8, "grad_accum": 1, "learning_rate": 1e-3}
    training.update(overrides.pop("training", {}))  # type: ignore[arg-type]
    serving = {"startup_timeout_s": 120, **overrides.pop("serving", {})}  # type: ignore[dict-item]
    data = {"dataset": str(dataset), "sample_size": 96, "eval_size": 8}
    data.update(overrides.pop("data", {}))  # type: ignore[arg-type]
    return PipelineParameters(
        backend="local",
        model={"base_model": str(base_model)},
        data=data,
        training={**training, "max_length": 96},
        serving=serving,
        local={"root": store},  # the quality gate keeps its strict defaults
        **overrides,
    )


def states(result: PipelineResult) -> dict[str, str]:
    return {step.name: step.state for step in result.steps}


def manifest(store: Path, key: str) -> dict[str, object]:
    return json.loads((store / "models" / key / "MANIFEST.json").read_text())


def test_first_run_trains_verifies_serves_and_reruns_from_cache(
    harness: None, tmp_path: Path, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    store = tmp_path / "store"
    settings = make_settings(store, tiny_model_dir, sample_dataset_path)

    first = finetune_pipeline(settings)

    assert emoji.emoji_count(first.answer) > 0  # the tuned model's answer, not the base's
    assert first.metrics["base_emoji_only_rate"] == 0  # the base answered in words
    assert first.metrics["emoji_only_rate"] >= 0.5
    assert states(first)["train"] == "Completed"
    assert first.model_uri == (store / "models" / first.lineage_key).resolve().as_uri()
    assert manifest(store, first.lineage_key)["lineage_key"] == first.lineage_key
    assert first.metrics["eval_examples"] == 8
    assert not pid_alive(int(first.endpoint.server_id)), "server must stop without --keep-serving"
    report = Artifact.get("finetune-report")
    assert report is not None and first.lineage_key in str(report.data)
    assert first.answer in str(report.data)
    assert first.cost == ("local: no cloud cost",) and "- local: no cloud cost" in str(report.data)

    completed_at = manifest(store, first.lineage_key)["completed_at"]
    second = finetune_pipeline(settings)

    assert second.lineage_key == first.lineage_key
    assert all(states(second)[step] == "Cached" for step in CACHED_STEPS), states(second)
    assert manifest(store, first.lineage_key)["completed_at"] == completed_at
    assert sorted(p.name for p in (store / "models").iterdir()) == [first.lineage_key]
    assert second.answer == first.answer  # greedy decoding on the same weights


@pytest.mark.slow  # make test-slow (CI runs it)
def test_changed_inputs_train_new_versions_and_keep_old_ones(
    harness: None, tmp_path: Path, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    store = tmp_path / "store"
    baseline = finetune_pipeline(make_settings(store, tiny_model_dir, sample_dataset_path))

    retuned = finetune_pipeline(
        make_settings(store, tiny_model_dir, sample_dataset_path, training={"lora_r": 8})
    )
    assert retuned.lineage_key != baseline.lineage_key
    assert states(retuned)["train"] == "Completed"

    edited = tmp_path / "edited.jsonl"
    rows = sample_dataset_path.read_text().splitlines()
    edited.write_text("\n".join(reversed(rows)) + "\n")  # same rows, new bytes → new revision
    new_data = finetune_pipeline(make_settings(store, tiny_model_dir, edited))
    assert new_data.lineage_key not in {baseline.lineage_key, retuned.lineage_key}
    assert states(new_data)["train"] == "Completed"

    versions = {p.name for p in (store / "models").iterdir()}
    assert versions == {baseline.lineage_key, retuned.lineage_key, new_data.lineage_key}


@pytest.mark.slow  # make test-slow (CI runs it)
def test_a_deleted_model_is_retrained_despite_the_cache(
    harness: None, tmp_path: Path, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    store = tmp_path / "store"
    settings = make_settings(store, tiny_model_dir, sample_dataset_path, data={"seed": 7})
    first = finetune_pipeline(settings)
    shutil.rmtree(store / "models" / first.lineage_key)

    again = finetune_pipeline(settings)

    assert states(again)["train"] == "Completed"
    assert states(again)["verify"] == "Completed"
    assert (store / "models" / first.lineage_key / "MANIFEST.json").is_file()


@pytest.mark.slow  # make test-slow (CI runs it)
def test_kept_server_answers_openai_client_and_is_replaced_after_smoke(
    harness: None, tmp_path: Path, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    store = tmp_path / "store"
    settings = make_settings(
        store, tiny_model_dir, sample_dataset_path, serving={"keep_serving": True}
    )
    first = finetune_pipeline(settings)
    second: PipelineResult | None = None
    try:
        assert pid_alive(int(first.endpoint.server_id))
        client = OpenAI(base_url=f"{first.endpoint.base_url}/v1", api_key="unused")
        completion = client.chat.completions.create(
            model="emoji-gemma",
            messages=[{"role": "user", "content": CODELAB_PROMPT}],
            max_tokens=16,
            temperature=0,
        )
        assert emoji.emoji_count(completion.choices[0].message.content or "") > 0

        second = finetune_pipeline(settings)

        assert not pid_alive(int(first.endpoint.server_id)), "old server retired after smoke"
        assert pid_alive(int(second.endpoint.server_id))
        live = json.loads((store / "serving.json").read_text())
        assert live["server_id"] == second.endpoint.server_id
    finally:
        for result in (first, second):
            if result is not None:
                stop_process_group(int(result.endpoint.server_id))


def test_bad_settings_exit_with_one_line_and_create_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for argv, expected in [
        (["--learning-rate", "0"], "invalid setting training.learning_rate"),
        (["--dataset", str(tmp_path / "missing.jsonl")], "data.dataset: file"),
        (["--base-model", str(tmp_path)], "model.base_model"),
        (["--served-model-name", "no spaces allowed"], "model.served_model_name"),
    ]:
        completed = subprocess.run(
            [sys.executable, "-m", "flows.finetune", "--store", str(store), *argv],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=120,
        )
        assert completed.returncode == 2, completed.stderr
        lines = completed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert expected in lines[0]
        assert not store.exists()


def test_a_rejected_model_is_reported_and_marked_never_served(
    harness: None, tmp_path: Path, tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    store = tmp_path / "store"
    strict = make_settings(store, tiny_model_dir, sample_dataset_path, data={"seed": 11})
    values = strict.model_dump()
    values["quality"]["max_eval_loss"] = 1e-9  # no model passes

    with pytest.raises(VerificationFailed, match=r"quality\.max_eval_loss"):
        finetune_pipeline(PipelineParameters.model_validate(values))

    (folder,) = (store / "models").iterdir()
    rejected = json.loads((folder / "REJECTED.json").read_text())
    assert any("quality.max_eval_loss" in problem for problem in rejected["problems"])
    assert not (store / "serving.json").exists(), "a rejected model is never served"
    report = str(Artifact.get("finetune-report").data)  # type: ignore[union-attr]
    assert f"Rejected model `{folder.name}`" in report
    assert "| eval_loss |" in report and "quality.max_eval_loss" in report
    assert "| training.lora_r | `16` |" in report  # what was trained, not only the inputs
