"""End-to-end tests of `job_image/finetune.py`, run as the real subprocess the pipeline starts.

Why subprocesses: the script's contract with the orchestrator is its exit code, its stdout
`PROGRESS` lines, its single `error:` line and the folder it publishes — none of which an
in-process call would exercise honestly. Runs are kept tiny (tiny Gemma 3, ~100 rows, a few
steps) so the whole file stays well under three minutes on two CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors import safe_open

from core.hashing import sha256_file, sha256_tree

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "job_image" / "finetune.py"
REQUIRED_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
}
PHASES = {"load", "eval_base", "train", "merge", "save", "eval"}
PUBLISHED_FILES = REQUIRED_FILES | {"metrics.json"}
TUNED_METRICS = {"eval_loss", "emoji_only_rate", "exact_match", "emoji_f1", "eval_examples"}
SMALL = ["--sample-size", "120", "--eval-size", "16", "--logging-steps", "5"]
LINEAGE = {"base_model": "tiny", "dataset_sha256": "abc", "sample_size": 120}


def job_args(
    model: object, dataset: object, output_dir: object, key: str, *extra: str
) -> list[str]:
    """The job's required arguments plus `extra` (argparse does not care about order)."""
    return [
        "--model", str(model), "--dataset", str(dataset),
        "--output-dir", str(output_dir), "--lineage-key", key, *extra,
    ]  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One finished invocation of the script."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def progress(self) -> list[dict[str, object]]:
        """The parsed `PROGRESS {json}` lines, in order."""
        prefix = "PROGRESS "
        return [
            json.loads(line[len(prefix) :])
            for line in self.stdout.splitlines()
            if line.startswith(prefix)
        ]

    def error_lines(self) -> list[str]:
        """stderr lines of the `error:` form (library warnings may precede them)."""
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_script(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, python: str = sys.executable
) -> Run:
    """Run the script from an unrelated cwd (it must not depend on the repo layout)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
    full_env.update(env or {})
    started = time.monotonic()
    done = subprocess.run(
        [python, str(SCRIPT), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def siblings(output_dir: Path) -> list[str]:
    """Everything next to the output folder: partial folders must never be left behind."""
    return sorted(p.name for p in output_dir.parent.iterdir()) if output_dir.parent.exists() else []


@pytest.fixture(scope="module")
def lora_run(
    tiny_model_dir: Path, sample_dataset_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Run, Path]:
    """One LoRA run shared by the checks below (training is the expensive part)."""
    store = tmp_path_factory.mktemp("store")
    output_dir = store / "models" / "key-lora"
    args = job_args(
        str(tiny_model_dir),
        str(sample_dataset_path),
        str(output_dir),
        "key-lora",
        *SMALL,
        "--max-steps",
        "20",
        "--learning-rate",
        "1e-3",  # the demo's rate: 20 LoRA steps at the default 2e-4 barely move a tiny model
        "--method",
        "lora",
        "--lineage-json",
        json.dumps(LINEAGE),
    )
    run = run_script(args, cwd=store)
    assert run.returncode == 0, run.stderr[-4000:]
    return run, output_dir


def test_lora_publishes_complete_folder(lora_run: tuple[Run, Path]) -> None:
    _, output_dir = lora_run
    names = {p.name for p in output_dir.iterdir()}
    assert names == PUBLISHED_FILES | {"MANIFEST.json"}
    assert not any(n.startswith("adapter") for n in names), names
    assert siblings(output_dir) == [output_dir.name]  # no .partial-* left behind


def test_manifest_lists_every_file_with_size_and_hash(
    lora_run: tuple[Run, Path], tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    _, output_dir = lora_run
    manifest = json.loads((output_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == 1
    assert manifest["lineage_key"] == "key-lora"
    assert manifest["lineage"] == LINEAGE
    on_disk = {p.name for p in output_dir.iterdir() if p.name != "MANIFEST.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry == {
            "size": (output_dir / name).stat().st_size,
            "sha256": sha256_file(output_dir / name),
        }
    training = manifest["training"]
    assert training["method"] == "lora"
    assert training["steps"] == 20
    assert training["train_examples"] == 120 - 16
    assert (training["sample_size"], training["eval_size"], training["seed"]) == (120, 16, 42)
    # Local inputs are recorded by content hash, computed exactly like the pipeline's lineage.
    assert training["base_model_revision"] == "sha256:" + sha256_tree(tiny_model_dir)
    assert training["dataset_revision"] == "sha256:" + sha256_file(sample_dataset_path)
    assert training["base_model_revision_requested"] is None
    assert training["resumed_from_step"] == 0 and training["train_tokens"] > 0
    hyper = training["hyperparameters"]
    assert (hyper["lora_r"], hyper["packing"], hyper["lr_scheduler"]) == (16, True, "cosine")
    # trl recognises the Gemma 3 template and masks all but the answer turn.
    assert hyper["loss"] == "assistant_only"
    assert manifest["created_at"].endswith("Z") and manifest["completed_at"].endswith("Z")


def test_metrics_cover_base_and_tuned_model_and_match_metrics_json(
    lora_run: tuple[Run, Path],
) -> None:
    _, output_dir = lora_run
    metrics = json.loads((output_dir / "MANIFEST.json").read_text())["metrics"]
    base = {f"base_{name}" for name in TUNED_METRICS - {"eval_examples"}}
    assert set(metrics) == TUNED_METRICS | base | {"train_loss"}
    assert json.loads((output_dir / "metrics.json").read_text()) == metrics
    assert metrics["eval_examples"] == 16
    assert math.isfinite(metrics["train_loss"])
    for prefix in ("", "base_"):
        assert 0 <= metrics[f"{prefix}eval_loss"] < 5
        assert 0 <= metrics[f"{prefix}exact_match"] <= metrics[f"{prefix}emoji_f1"] <= 1
        assert metrics[f"{prefix}exact_match"] <= metrics[f"{prefix}emoji_only_rate"] <= 1
    # The untuned tiny base answers in words; 20 LoRA steps teach it to answer in emoji.
    assert metrics["base_emoji_only_rate"] == 0 and metrics["base_emoji_f1"] == 0, metrics
    assert metrics["emoji_only_rate"] >= 0.5 and metrics["emoji_f1"] > 0, metrics
    assert metrics["eval_loss"] < metrics["base_eval_loss"], metrics


def test_merged_weights_have_no_lora_tensors(lora_run: tuple[Run, Path]) -> None:
    _, output_dir = lora_run
    with safe_open(output_dir / "model.safetensors", framework="pt") as weights:
        names = list(weights.keys())
    assert names and not [n for n in names if "lora" in n.lower()]
    config = json.loads((output_dir / "config.json").read_text())
    assert "quantization_config" not in config


def test_generation_config_stops_at_end_of_turn(lora_run: tuple[Run, Path]) -> None:
    _, output_dir = lora_run
    tokenizer = json.loads((output_dir / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    generation = json.loads((output_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [ids["<eos>"], ids["<end_of_turn>"]]


def test_progress_lines_are_json_and_cover_every_phase(lora_run: tuple[Run, Path]) -> None:
    run, _ = lora_run
    events = run.progress()
    assert {e["phase"] for e in events} == PHASES
    assert all(isinstance(e["step"], int) and isinstance(e["total"], int) for e in events)
    # One bar for the whole job: never backwards, never near done while loading, 1.0 at the end.
    overall = [e["overall"] for e in events]
    assert overall == sorted(overall) and overall[-1] == 1.0 and overall.count(1.0) == 1
    assert all(e["overall"] < 0.1 for e in events if e["phase"] == "load")
    train = [e for e in events if e["phase"] == "train"]
    assert [e["step"] for e in train] == [5, 10, 15, 20]
    assert all(e["total"] == 20 and isinstance(e["loss"], float) for e in train)
    assert [e["phase"] for e in events if e["phase"] != "train"] == [
        "load",
        "load",
        "load",
        "eval_base",
        "merge",
        "merge",
        "save",
        "save",
        "eval",
    ]  # fmt: skip  (16 held-out rows: one evaluation batch per model)


def test_rerun_with_same_lineage_key_is_a_fast_noop(
    lora_run: tuple[Run, Path], tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    _, output_dir = lora_run
    before = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    args = job_args(
        str(tiny_model_dir),
        str(sample_dataset_path),
        str(output_dir),
        "key-lora",
        *SMALL,
    )
    rerun = run_script(args, cwd=output_dir.parent)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.progress() == [] and "nothing to do" in rerun.stdout
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == before


def test_other_lineage_key_in_published_folder_is_refused(
    lora_run: tuple[Run, Path], tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    _, output_dir = lora_run
    manifest = (output_dir / "MANIFEST.json").read_bytes()
    args = job_args(
        str(tiny_model_dir),
        str(sample_dataset_path),
        str(output_dir),
        "another-key",
        *SMALL,
    )
    run = run_script(args, cwd=output_dir.parent)
    assert run.returncode == 2
    assert len(run.error_lines()) == 1 and "key-lora" in run.error_lines()[0]
    assert (output_dir / "MANIFEST.json").read_bytes() == manifest


def test_qlora_on_cpu_replaces_stale_folder_and_reads_env(
    tiny_model_dir: Path, sample_dataset_path: Path, tmp_path: Path
) -> None:
    """QLoRA (bitsandbytes NF4 on CPU) end to end; options from FT_* env, the CLI winning."""
    output_dir = tmp_path / "models" / "key-qlora"
    output_dir.mkdir(parents=True)
    (output_dir / "half-written.bin").write_bytes(b"crashed attempt")  # no MANIFEST.json
    stale_partial = output_dir.with_name("key-qlora.partial-dead0000")
    stale_partial.mkdir()
    env = {
        "FT_MODEL": str(tiny_model_dir),
        "FT_DATASET": str(sample_dataset_path),
        "FT_SAMPLE_SIZE": "60",
        "FT_EVAL_SIZE": "8",
        "FT_MAX_STEPS": "6",
        "FT_LOGGING_STEPS": "3",
        "FT_OUTPUT_DIR": str(output_dir),
        "FT_LINEAGE_KEY": "key-qlora",
        "FT_METHOD": "lora",
    }
    run = run_script(["--method", "qlora"], cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "4-bit=True" in run.stdout  # the base really was quantized for training
    manifest = json.loads((output_dir / "MANIFEST.json").read_text())
    assert manifest["training"]["method"] == "qlora"
    assert (manifest["training"]["steps"], manifest["metrics"]["eval_examples"]) == (6, 8)
    assert set(manifest["files"]) == PUBLISHED_FILES  # the stale file is gone
    with safe_open(output_dir / "model.safetensors", framework="pt") as weights:
        assert not [n for n in weights.keys() if "lora" in n.lower()]  # noqa: SIM118
    assert siblings(output_dir) == [output_dir.name]


def test_unknown_chat_template_falls_back_to_completion_only_loss(
    tiny_model_dir: Path, sample_dataset_path: Path, tmp_path: Path
) -> None:
    """trl only adds `{% generation %}` markers to templates it knows; others still train."""
    model = tmp_path / "custom-template"
    shutil.copytree(tiny_model_dir, model)
    template = model / "chat_template.jinja"
    template.write_text("{#- a local edit -#}\n" + template.read_text(encoding="utf-8"))
    output_dir = tmp_path / "models" / "key-custom"
    args = job_args(
        str(model),
        str(sample_dataset_path),
        str(output_dir),
        "key-custom",
        "--sample-size",
        "40",
        "--eval-size",
        "4",
        "--max-steps",
        "4",
        "--logging-steps",
        "2",
    )
    run = run_script(args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    manifest = json.loads((output_dir / "MANIFEST.json").read_text())
    assert manifest["training"]["hyperparameters"]["loss"] == "completion_only"
    assert manifest["metrics"]["eval_examples"] == 4


def _sealed_steps(folder: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in folder.glob("checkpoint-*/COMPLETE"))


def test_killed_run_resumes_from_last_complete_checkpoint_with_identical_weights(
    tiny_model_dir: Path, sample_dataset_path: Path, tmp_path: Path
) -> None:
    """SIGKILL mid-training (no warning, like a preempted task), rerun, and finish from there.

    Resuming restores the adapter, optimizer, scheduler, RNG and data position, so the result
    is bit-identical to a run that was never interrupted.
    """

    def args(key: str) -> list[str]:
        return job_args(
            tiny_model_dir, sample_dataset_path, tmp_path / "models" / key, key,
            "--sample-size", "60", "--eval-size", "4", "--max-steps", "8", "--batch-size", "1",
            "--logging-steps", "2", "--checkpoint-steps", "2",
        )  # fmt: skip

    output_dir = tmp_path / "models" / "key-resume"
    checkpoint_dir = output_dir.with_name("key-resume.checkpoints")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
    first = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args("key-resume")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not _sealed_steps(checkpoint_dir) or 4 not in _sealed_steps(checkpoint_dir):
            assert first.poll() is None, "the run ended before its checkpoint at step 4"
            assert time.monotonic() < deadline, "no complete checkpoint at step 4 in time"
            time.sleep(0.02)
    finally:
        first.kill()
        first.wait()
    sealed = _sealed_steps(checkpoint_dir)
    assert not (output_dir / "MANIFEST.json").exists()

    resumed = run_script(args("key-resume"), cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"resuming from checkpoint-{sealed[-1]} (step {sealed[-1]})" in resumed.stdout
    assert "base model metrics reused" in resumed.stdout
    train_steps = [e["step"] for e in resumed.progress() if e["phase"] == "train"]
    assert train_steps and train_steps[0] > sealed[-1] and train_steps[-1] == 8
    manifest = json.loads((output_dir / "MANIFEST.json").read_text())
    assert (manifest["training"]["steps"], manifest["training"]["resumed_from_step"]) == (
        8,
        sealed[-1],
    )
    assert siblings(output_dir) == [output_dir.name]  # checkpoints removed once published

    uninterrupted = run_script(args("key-straight"), cwd=tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-4000:]
    straight = tmp_path / "models" / "key-straight" / "model.safetensors"
    assert sha256_file(output_dir / "model.safetensors") == sha256_file(straight)


GOOD_ROW = '{"text": "a pizza", "emoji": "🍕"}\n'


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD_INPUTS = {
    "missing column": (
        "data",
        lambda d, m: _write(d / "x.jsonl", '{"text": "a", "emo": "b"}\n'),
        "x.jsonl line 1 has no 'emoji' field",
    ),
    "empty data": ("data", lambda d, m: _write(d / "x.jsonl", ""), "empty"),
    "sample larger than data": ("args", ["--sample-size", "100000"], "exceeds"),
    "unknown model path": ("model", lambda d, m: d / "no-such-model", "does not exist"),
    "no chat template": ("model", lambda d, m: _without_template(d, m), "chat template"),
    "eval not smaller than sample": ("args", ["--eval-size", "120"], "eval-size"),
    "lineage json not an object": ("args", ["--lineage-json", "[1, 2]"], "JSON object"),
    "unknown method": ("args", ["--method", "sgd"], "method"),
    "non-numeric option": ("args", ["--lora-r", "sixteen"], "lora-r"),
    "unknown option in a config file": (
        "config",
        lambda d, m: _write(d / "job.yaml", "lora_rank: 8\n"),
        "unknown option",
    ),
    "unknown flag": (
        "args",
        ["--lora-rank", "8"],
        "unknown option --lora-rank; did you mean --lora-r?",
    ),
    "stray argument": ("args", ["eight"], "['eight']"),
    "row that is not json": (
        "data",
        lambda d, m: _write(d / "x.jsonl", GOOD_ROW + '{"text": "b", "emoji": \n' + GOOD_ROW),
        "x.jsonl line 2 is not valid JSON",
    ),
    "row with a wrong type": (
        "data",
        lambda d, m: _write(d / "x.jsonl", GOOD_ROW * 2 + '{"text": "c", "emoji": ["🍕"]}\n'),
        "x.jsonl line 3 has 'emoji' as an array, not a string",
    ),
}


def _without_template(tmp: Path, tiny_model_dir: Path) -> Path:
    copy = tmp / "no-template"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "chat_template.jinja").unlink()
    return copy


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, tiny_model_dir: Path, sample_dataset_path: Path, tmp_path: Path
) -> None:
    kind, value, expected = BAD_INPUTS[case]
    model, dataset, extra = tiny_model_dir, sample_dataset_path, []
    if kind == "data":
        dataset = value(tmp_path, tiny_model_dir)
    elif kind == "model":
        model = value(tmp_path, tiny_model_dir)
    elif kind == "config":
        extra = ["--config", str(value(tmp_path, tiny_model_dir))]
    else:
        extra = value
    output_dir = tmp_path / "store" / "models" / "key"
    args = job_args(
        str(model),
        str(dataset),
        str(output_dir),
        "key",
        *SMALL,
        "--max-steps",
        "2",
        *extra,
    )
    run = run_script(args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-4000:]
    assert run.stderr.strip().splitlines() == run.error_lines(), run.stderr  # no traceback
    assert len(run.error_lines()) == 1 and not run.error_lines()[0].startswith("error: error")
    assert expected.lower() in run.error_lines()[0].lower()
    assert not (tmp_path / "store").exists()
    assert 'PROGRESS {"phase": "train"' not in run.stdout


def test_help_documents_every_option_and_its_env_var(tmp_path: Path) -> None:
    run = run_script(["--help"], cwd=tmp_path)
    assert run.returncode == 0
    for flag in (
        "--model",
        "--dataset-revision",
        "--sample-size",
        "--target-modules",
        "--eval-max-new-tokens",
        "--lineage-json",
        "--method",
        "--lr-scheduler",
        "--packing",
        "--loss-on",
        "--checkpoint-steps",
    ):
        env = "FT_" + flag[2:].replace("-", "_").upper()
        assert flag in run.stdout and env in run.stdout
    assert "config.yaml" in run.stdout and "FT_CONFIG" in run.stdout
    assert "(default: cosine)" in run.stdout  # effective defaults, read from config.yaml
