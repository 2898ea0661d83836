#!/usr/bin/env python3
"""Training throughput: the Cloud Run codelab's configuration vs ours, same model, same rows.

    python bench/train_throughput.py [--repeats N] [--work-dir DIR]      (or: make bench)

Both configurations run through the training job's own code (job_image/: trl SFTTrainer,
the same model loading, the same held-out scoring); only the options differ:

    codelab  LoRA r=8 (alpha 16) on q_proj,v_proj; batch 1 x grad-accum 2; no packing;
             loss on the whole sequence; lr 2e-4, linear decay, no warmup (assumed: the
             codelab's script fixes none of these beyond TrainingArguments' defaults);
             fp16 on a GPU — on a CPU fp16 training is impossible, so fp32 there
    ours     job_image/config.yaml as is (r=16 on every projection, packed padding-free
             rows, answer-only loss, cosine schedule with warmup; bf16 on a GPU)

Both train one epoch, without checkpoints (the codelab has none) and on the same method:
QLoRA (4-bit NF4) on a GPU, LoRA on a CPU, as the job's `--method auto` does.

- CPU: the tiny Gemma 3 of demo/tiny_model.py, pre-trained briefly on the training rows only,
  on all 400 rows of data/text2emoji_sample.jsonl: 40 held out, 360 trained on.
- GPU: a randomly initialised model with google/gemma-3-1b-it's exact architecture (config
  only, nothing downloaded) and the demo's byte-level tokenizer; 1000 rows = 50 held out +
  the other 350 sample rows repeated to 950. Throughput is the figure here; a random model's
  eval loss and emoji metrics only show that both configurations behave alike.

Each configuration is timed in its own process (`--repeats` times, interleaved; the median is
reported), so peak memory is that run's: `torch.cuda.max_memory_allocated` on a GPU, the
process's peak RSS on a CPU. Wall time is `trainer.train()` alone (model loading and
tokenisation are the same for both); tokens/s counts real tokens, padding excluded. The last
line is machine-readable:

    speedup_vs_codelab=<x> eval_loss_ours=<a> eval_loss_codelab=<b>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_IMAGE = REPO_ROOT / "job_image"
SAMPLE = REPO_ROOT / "data" / "text2emoji_sample.jsonl"
SEED = 42
CPU_EVAL_ROWS = 40
GPU_EVAL_ROWS, GPU_ROWS = 50, 1000
TINY_PRETRAIN_STEPS = 100  # enough to answer in emoji, little enough to leave room to learn
CONFIGS: dict[str, list[str]] = {
    "codelab": [
        "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.05",
        "--target-modules", "q_proj,v_proj", "--batch-size", "1", "--grad-accum", "2",
        "--packing", "false", "--loss-on", "sequence", "--learning-rate", "2e-4",
        "--lr-scheduler", "linear", "--warmup-ratio", "0",
    ],
    "ours": [],  # job_image/config.yaml
}  # fmt: skip
COMMON = ["--epochs", "1", "--max-steps", "-1", "--checkpoint-steps", "0", "--seed", str(SEED)]


# --------------------------------------------------------------------------- inputs


def split_rows(on_gpu: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(held-out rows, training rows): disjoint; on a GPU the training rows repeat to 950."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line]
    random.Random(SEED).shuffle(rows)
    held_out = GPU_EVAL_ROWS if on_gpu else CPU_EVAL_ROWS
    eval_rows, train_rows = rows[:held_out], rows[held_out:]
    if on_gpu:
        wanted = GPU_ROWS - held_out
        train_rows = (train_rows * (wanted // len(train_rows) + 1))[:wanted]
    return eval_rows, train_rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows in Text2Emoji's .jsonl schema, the format the job and the demo builder read."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def gemma_3_1b_config(tokenizer: Any) -> Any:
    """google/gemma-3-1b-it's architecture (its config.json), with the demo tokenizer's ids."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=262_144,
        hidden_size=1152,
        intermediate_size=6912,
        num_hidden_layers=26,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=32_768,
        rms_norm_eps=1e-6,
        sliding_window=512,
        sliding_window_pattern=6,  # 5 local layers, then 1 global, repeated
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        attention_bias=False,
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")],
    )


def prepare_model(work_dir: Path, train_file: Path, on_gpu: bool) -> Path:
    """The tiny demo model (CPU), or a random gemma-3-1b-shaped model with its tokenizer (GPU)."""
    sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repo root is not on sys.path
    from demo.tiny_model import build_tiny_model

    tiny = build_tiny_model(work_dir / "tiny", train_file, pretrain_steps=TINY_PRETRAIN_STEPS)
    if not on_gpu:
        return tiny
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, GenerationConfig

    folder = work_dir / "gemma-3-1b-random"
    if (folder / "model.safetensors").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    torch.manual_seed(SEED)
    config = gemma_3_1b_config(tokenizer)
    model = Gemma3ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig.from_pretrained(tiny)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(tiny / "chat_template.jinja", folder / "chat_template.jinja")
    return folder


# --------------------------------------------------------------------------- one measured run


def job_module(name: str) -> Any:
    """A job_image/ module, imported the way finetune.py imports it (no bytecode left there)."""
    import importlib

    sys.dont_write_bytecode = True
    if str(JOB_IMAGE) not in sys.path:
        sys.path.insert(0, str(JOB_IMAGE))
    return importlib.import_module(name)


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: train one configuration once (or score the base), return numbers."""
    config, modeling, scoring = (job_module(n) for n in ("config", "modeling", "scoring"))
    required = ["--model", str(args.model), "--dataset", str(args.train), "--output-dir", "-"]
    cfg = config.parse_config(
        [*required, "--lineage-key", "bench", *COMMON, *CONFIGS.get(args.worker, [])], {}
    )
    device = modeling.pick_device("auto")
    if args.worker == "codelab" and device.on_cuda:  # the codelab trains in fp16
        import torch

        device = modeling.Device(on_cuda=True, dtype=torch.float16, method=device.method)
    base = modeling.resolve_model(cfg.inputs)
    held_out = scoring.encode(base.tokenizer, chats(args.eval), cfg.train.max_length)
    if args.worker == "base":
        model = modeling.load_for_inference(base.path, device)
        scores = scoring.evaluate(model, base.tokenizer, held_out, cfg.evaluation, "eval")
        return {"config": "base (untrained)", "method": "-", **scores}
    result, model = measure_training(cfg, base, device, chats(args.train))
    result["config"] = args.worker
    if args.score:
        model.eval()
        result.update(scoring.evaluate(model, base.tokenizer, held_out, cfg.evaluation, "eval"))
    return result


def measure_training(
    cfg: Any, base: Any, device: Any, train_chats: list[dict[str, Any]]
) -> tuple[dict[str, Any], Any]:
    """Time `trainer.train()` for one epoch; return the numbers and the trained model."""
    import tempfile

    import torch
    from datasets import Dataset

    modeling, train = job_module("modeling"), job_module("train")
    loss_mode = train.choose_loss_mode(base.tokenizer, cfg.train.loss_on)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        trainer = train.make_trainer(
            cfg,
            modeling.load_for_training(base.path, device),
            base.tokenizer,
            Dataset.from_list(train_chats),
            train.sft_config(cfg, Path(scratch), device, loss_mode),
            loss_mode,
        )
        if device.on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        output = train.run_training(trainer, None)
        if device.on_cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
    result = {
        "method": f"{device.method} {str(device.dtype).removeprefix('torch.')}",
        "tokens": train.real_tokens(trainer),
        "steps": trainer.state.global_step,
        "wall_s": wall,
        "train_loss": output.training_loss,
        "peak_mem_gib": peak_memory_gib(device.on_cuda),
    }
    return result, trainer.model


def chats(path: Path) -> list[dict[str, Any]]:
    """The rows of a .jsonl file as the job's conversations."""
    rows = job_module("rows")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [rows.to_messages(json.loads(line)) for line in lines if line]


def peak_memory_gib(on_cuda: bool) -> float:
    """Peak CUDA memory allocated by tensors, or this process's peak resident memory."""
    import torch

    if on_cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# --------------------------------------------------------------------------- the comparison


@dataclass
class Measured:
    """Every run of one configuration: timings from all, scores from the first."""

    runs: list[dict[str, Any]]

    @property
    def first(self) -> dict[str, Any]:
        return self.runs[0]

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    def tokens_per_s(self) -> float:
        return statistics.median(run["tokens"] / run["wall_s"] for run in self.runs)


def spawn(kind: str, paths: dict[str, Path], score: bool) -> dict[str, Any]:
    """Run one measurement in its own process and read back its JSON result."""
    result = paths["work"] / f"result-{kind}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
    command += ["--model", str(paths["model"]), "--train", str(paths["train"])]
    command += ["--eval", str(paths["eval"]), "--result", str(result)]
    done = subprocess.run(
        [*command, *(["--score"] if score else [])],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text(encoding="utf-8"))


def compare(paths: dict[str, Path], repeats: int) -> tuple[dict[str, Any], dict[str, Measured]]:
    """The base model's scores, then each configuration `repeats` times, interleaved."""
    base = spawn("base", paths, score=True)
    measured: dict[str, Measured] = {name: Measured([]) for name in CONFIGS}
    for repeat in range(repeats):
        for name in CONFIGS:
            measured[name].runs.append(spawn(name, paths, score=repeat == 0))
            print(f"  {name} run {repeat + 1}/{repeats}: {measured[name].runs[-1]['wall_s']:.2f} s")
    return base, measured


def table(base: dict[str, Any], measured: dict[str, Measured]) -> list[str]:
    """A Markdown table, one row per configuration (plus the untrained base for reference)."""
    header = (
        "| config | method | real tokens | optimizer steps | wall time (s), median [min-max] "
        "| tokens/s | peak memory (GiB) | eval loss | emoji-only | exact match | emoji F1 |"
    )
    lines = [header, "|" + "---|" * 11]
    for name, runs in measured.items():
        walls = [run["wall_s"] for run in runs.runs]
        first = runs.first
        lines.append(
            f"| {name} | {first['method']} | {first['tokens']} | {first['steps']} "
            f"| {runs.median('wall_s'):.2f} [{min(walls):.2f}-{max(walls):.2f}] "
            f"| {runs.tokens_per_s():.0f} | {runs.median('peak_mem_gib'):.2f} " + scores(first)
        )
    lines.append("| base (untrained) | - | - | - | - | - | - " + scores(base))
    return lines


def scores(result: dict[str, Any]) -> str:
    """The evaluation columns of one table row."""
    return (
        f"| {loss_text(result)} | {result['emoji_only_rate']:.2f} | {result['exact_match']:.2f} "
        f"| {result['emoji_f1']:.2f} |"
    )


def loss_text(result: dict[str, Any]) -> str:
    """The eval loss to 4 decimals; `nan` when it was not finite (e.g. an fp16 overflow)."""
    loss = result["eval_loss"]
    return "nan" if loss is None else f"{loss:.4f}"


def conditions(on_gpu: bool, repeats: int, rows: tuple[int, int]) -> str:
    """What the numbers depend on, printed above the table."""
    import torch

    if on_gpu:
        where = f"GPU {torch.cuda.get_device_name(0)}, gemma-3-1b architecture (random weights)"
    else:
        where = (
            f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, tiny Gemma 3"
        )
    return (
        f"{where}; {rows[1]} training rows, {rows[0]} held out; one epoch each; "
        f"{repeats} interleaved runs per config; 1-min load average {os.getloadavg()[0]:.2f} "
        "(other processes share these cores)"
    )


def main(argv: list[str] | None = None) -> int:
    """Prepare model and rows, measure both configurations, print the table and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration")
    parser.add_argument(
        "--work-dir", type=Path, default=REPO_ROOT / ".pipeline" / "bench", help="models, data"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    for hidden in ("--model", "--train", "--eval", "--result"):
        parser.add_argument(hidden, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--score", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in (("HF_HUB_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(name, value)
    if args.worker:
        result = run_worker(args)
        args.result.write_text(json.dumps(result), encoding="utf-8")
        return 0

    import torch

    on_gpu = torch.cuda.is_available()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    eval_rows, train_rows = split_rows(on_gpu)
    paths = {
        "work": args.work_dir,
        "eval": write_jsonl(args.work_dir / "eval.jsonl", eval_rows),
        "train": write_jsonl(args.work_dir / "train.jsonl", train_rows),
    }
    paths["model"] = prepare_model(args.work_dir, paths["train"], on_gpu)
    started = time.perf_counter()
    base, measured = compare(paths, args.repeats)
    print()
    print(conditions(on_gpu, args.repeats, (len(eval_rows), len(train_rows))))
    print()
    print("\n".join(table(base, measured)))
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")
    ours, codelab = measured["ours"], measured["codelab"]
    speedup = ours.tokens_per_s() / codelab.tokens_per_s()
    print(
        f"speedup_vs_codelab={speedup:.2f} eval_loss_ours={loss_text(ours.first)} "
        f"eval_loss_codelab={loss_text(codelab.first)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
