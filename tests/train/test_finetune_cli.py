"""End-to-end tests of `job_image/finetune.py`, run as the real subprocess the pipeline starts.

Why subprocesses: the script's contract with the orchestrator is its exit code, its stdout
`PROGRESS` lines, its single `error:` line and the folder it publishes — none of which an
in-process call would exercise honestly. Runs are kept tiny (tiny Gemma 3, ~100 rows, a few
steps) so the whole file stays well under three minutes on two CPU cores.
"""

from __future__ import annotations

import hashlib
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
PHASES = {"load", "train", "eval", "merge", "save"}
SMALL = ["--sample-size", "120", "--eval-size", "16", "--logging-steps", "5"]
LINEAGE = {"base_model": "tiny", "dataset_sha256": "abc", "sample_size": 120}


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


def run_script(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run the script from an unrelated cwd (it must not depend on the repo layout)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
    full_env.update(env or {})
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    args = [
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(sample_dataset_path),
        *SMALL,
        "--max-steps",
        "20",
        "--method",
        "lora",
        "--output-dir",
        str(output_dir),
        "--lineage-key",
        "key-lora",
        "--lineage-json",
        json.dumps(LINEAGE),
    ]
    run = run_script(args, cwd=store)
    assert run.returncode == 0, run.stderr[-4000:]
    return run, output_dir


def test_lora_publishes_complete_folder(lora_run: tuple[Run, Path]) -> None:
    _, output_dir = lora_run
    names = {p.name for p in output_dir.iterdir()}
    assert REQUIRED_FILES | {"MANIFEST.json"} <= names
    assert not any(n.startswith("adapter") for n in names), names
    assert siblings(output_dir) == [output_dir.name]  # no .partial-* left behind


def test_manifest_lists_every_file_with_size_and_hash(lora_run: tuple[Run, Path]) -> None:
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
            "sha256": sha256(output_dir / name),
        }
    training = manifest["training"]
    assert training["method"] == "lora"
    assert training["steps"] == 20
    assert training["train_examples"] == 120 - 16
    assert (training["sample_size"], training["eval_size"], training["seed"]) == (120, 16, 42)
    assert training["base_model_revision"] is None
    assert training["hyperparameters"]["lora_r"] == 16
    # trl recognises the Gemma 3 template and masks all but the answer turn.
    assert training["hyperparameters"]["loss"] == "assistant_only"
    assert manifest["created_at"].endswith("Z") and manifest["completed_at"].endswith("Z")


def test_metrics_are_present_and_sane(lora_run: tuple[Run, Path]) -> None:
    _, output_dir = lora_run
    metrics = json.loads((output_dir / "MANIFEST.json").read_text())["metrics"]
    assert set(metrics) == {
        "eval_loss",
        "emoji_only_rate",
        "exact_match",
        "eval_examples",
        "train_loss",
    }
    assert metrics["eval_examples"] == 16
    assert 0 <= metrics["eval_loss"] < 5 and math.isfinite(metrics["train_loss"])
    assert 0 <= metrics["exact_match"] <= metrics["emoji_only_rate"] <= 1
    # The tiny base is pre-trained to answer in emoji; 20 LoRA steps must not break that.
    assert metrics["emoji_only_rate"] >= 0.5, metrics


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
    train = [e for e in events if e["phase"] == "train"]
    assert [e["step"] for e in train] == [5, 10, 15, 20]
    assert all(e["total"] == 20 and isinstance(e["loss"], float) for e in train)
    evals = [e for e in events if e["phase"] == "eval"]
    assert evals[-1]["step"] == evals[-1]["total"] == 16


def test_rerun_with_same_lineage_key_is_a_fast_noop(
    lora_run: tuple[Run, Path], tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    _, output_dir = lora_run
    before = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    args = [
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(sample_dataset_path),
        *SMALL,
        "--output-dir",
        str(output_dir),
        "--lineage-key",
        "key-lora",
    ]
    rerun = run_script(args, cwd=output_dir.parent)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.progress() == [] and "nothing to do" in rerun.stdout
    assert rerun.seconds < 10
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == before


def test_other_lineage_key_in_published_folder_is_refused(
    lora_run: tuple[Run, Path], tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    _, output_dir = lora_run
    manifest = (output_dir / "MANIFEST.json").read_bytes()
    args = [
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(sample_dataset_path),
        *SMALL,
        "--output-dir",
        str(output_dir),
        "--lineage-key",
        "another-key",
    ]
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
    assert set(manifest["files"]) == REQUIRED_FILES  # the stale file is gone
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
    args = [
        "--model",
        str(model),
        "--dataset",
        str(sample_dataset_path),
        "--sample-size",
        "40",
        "--eval-size",
        "4",
        "--max-steps",
        "4",
        "--logging-steps",
        "2",
        "--output-dir",
        str(output_dir),
        "--lineage-key",
        "key-custom",
    ]
    run = run_script(args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    manifest = json.loads((output_dir / "MANIFEST.json").read_text())
    assert manifest["training"]["hyperparameters"]["loss"] == "completion_only"
    assert manifest["metrics"]["eval_examples"] == 4


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD_INPUTS = {
    "missing column": (
        "data",
        lambda d, m: _write(d / "x.jsonl", '{"text": "a", "emo": "b"}\n'),
        "column",
    ),
    "empty data": ("data", lambda d, m: _write(d / "x.jsonl", ""), "empty"),
    "sample larger than data": ("args", ["--sample-size", "100000"], "exceeds"),
    "unknown model path": ("model", lambda d, m: d / "no-such-model", "does not exist"),
    "no chat template": ("model", lambda d, m: _without_template(d, m), "chat template"),
    "eval not smaller than sample": ("args", ["--eval-size", "120"], "eval-size"),
    "lineage json not an object": ("args", ["--lineage-json", "[1, 2]"], "JSON object"),
    "unknown method": ("args", ["--method", "sgd"], "method"),
    "non-numeric option": ("args", ["--lora-r", "sixteen"], "lora-r"),
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
    else:
        extra = value
    output_dir = tmp_path / "store" / "models" / "key"
    args = [
        "--model",
        str(model),
        "--dataset",
        str(dataset),
        *SMALL,
        "--max-steps",
        "2",
        "--output-dir",
        str(output_dir),
        "--lineage-key",
        "key",
        *extra,
    ]
    run = run_script(args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-4000:]
    assert len(run.error_lines()) == 1, run.stderr
    assert run.stderr.rstrip().splitlines()[-1] == run.error_lines()[0]
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
    ):
        env = "FT_" + flag[2:].replace("-", "_").upper()
        assert flag in run.stdout and env in run.stdout
