#!/usr/bin/env python3
"""Training throughput and quality: the Cloud Run codelab's configuration vs ours, same rows.

    python bench/train_throughput.py [--repeats N] [--work-dir DIR]      (or: make bench)

Every configuration runs through the training job's own code (job_image/: trl SFTTrainer,
the same model loading, the same held-out scoring); only the options differ:

    codelab      LoRA r=8 (alpha 16) on q_proj,v_proj; batch 1 x grad-accum 2; no packing;
                 loss on the whole sequence; lr 2e-4, linear decay, no warmup; 1 epoch
                 (assumed: the codelab's script fixes none of these beyond TrainingArguments'
                 defaults); QLoRA in fp16 on a GPU — on a CPU, LoRA in fp32 like ours (4-bit
                 and fp16 training would only measure bitsandbytes' CPU kernels)
    ours         job_image/config.yaml as is (r=16 on every projection, packed padding-free
                 rows, answer-only loss, cosine schedule with warmup, 3 epochs; bf16 LoRA on a
                 GPU, fp32 LoRA on a CPU)
    ours-qlora   (GPU only) ours with --method qlora: the 4-bit path for models that don't fit

No checkpoints (the codelab has none).

- CPU: the demo base of demo/tiny_model.py (whatever it builds), pre-trained briefly on the
  training rows only, on all 400 rows of data/text2emoji_sample.jsonl: 40 held out, 360 trained
  on.
- GPU: a randomly initialised model with google/gemma-3-1b-it's exact architecture (config
  only, nothing downloaded) and the demo's byte-level tokenizer; 1000 rows = 50 held out +
  the other 350 sample rows repeated to 950. Throughput is the figure here; a random model's
  eval loss and emoji metrics only show that the configurations behave alike.

Each configuration is measured in its own process, `--repeats` times, interleaved (codelab,
ours, codelab, ours, ...), so load on a shared machine hits them alike; medians are reported with
their [min-max] spread. Per run: wall time and the process's CPU seconds (user + sys, all
threads) of `trainer.train()` alone (model loading and tokenisation are the same for all),
peak memory (`torch.cuda.max_memory_allocated` on a GPU, the process's peak RSS on a CPU), and
real tokens (padding excluded). On a CPU the speedup is the ratio of median tokens per CPU
second — what other processes on the cores cannot inflate, unlike wall time; on a GPU it is
tokens per wall second. `steps_1000_rows` is the optimizer steps our defaults take on the
reference workload (950 training rows as above), by the Trainer's own arithmetic over the
rows packed with the demo tokenizer under the Gemma 3 chat template. The last line is
machine-readable:

    speedup_vs_codelab=<x> eval_loss_ours=<a> eval_loss_codelab=<b> emoji_f1_ours=<f>
    emoji_f1_codelab=<g> emoji_f1_base=<h> emoji_only_ours=<o> emoji_only_base=<p>
    steps_1000_rows=<n>
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
# One thread per run: the tiny model's matmuls are too small to gain from two, and on shared
# cores a second OpenMP thread spin-waits for the first, inflating CPU seconds with load.
TORCH_THREADS = 1
TINY_PRETRAIN_STEPS = 100  # enough to answer in emoji, little enough to leave room to learn
CODELAB = [
    "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.05",
    "--target-modules", "q_proj,v_proj", "--batch-size", "1", "--grad-accum", "2",
    "--packing", "false", "--loss-on", "sequence", "--learning-rate", "2e-4",
    "--lr-scheduler", "linear", "--warmup-ratio", "0", "--epochs", "1",
]  # fmt: skip
CPU_CONFIGS: dict[str, list[str]] = {
    "codelab": [*CODELAB, "--method", "lora"],
    "ours": ["--method", "lora"],  # job_image/config.yaml; auto = lora
}
GPU_CONFIGS: dict[str, list[str]] = {
    "codelab": [*CODELAB, "--method", "qlora"],
    "ours": ["--method", "lora"],
    "ours-qlora": ["--method", "qlora"],
}
COMMON = ["--max-steps", "-1", "--checkpoint-steps", "0", "--seed", str(SEED)]


# --------------------------------------------------------------------------- inputs


def split_rows(reference: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(held-out rows, training rows): disjoint; for the reference workload (the GPU run and
    steps_1000_rows) 50 held out and the training rows repeated to 950."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line]
    random.Random(SEED).shuffle(rows)
    held_out = GPU_EVAL_ROWS if reference else CPU_EVAL_ROWS
    eval_rows, train_rows = rows[:held_out], rows[held_out:]
    if reference:
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
    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        torch.set_num_threads(TORCH_THREADS)
    config, modeling, scoring = (job_module(n) for n in ("config", "modeling", "scoring"))
    required = ["--model", str(args.model), "--dataset", str(args.train), "--output-dir", "-"]
    # the step count is the defaults' own (checkpoints included); the timed runs save none
    configs = GPU_CONFIGS if on_gpu else CPU_CONFIGS
    options = [] if args.worker == "steps" else [*COMMON, *configs.get(args.worker, [])]
    cfg = config.parse_config([*required, "--lineage-key", "bench", *options], {})
    device = modeling.pick_device(cfg.lora.method)
    if args.worker == "codelab" and device.on_cuda:  # the codelab trains in fp16
        device = modeling.Device(on_cuda=True, dtype=torch.float16, method=device.method)
    base = modeling.resolve_model(cfg.inputs)
    held_out = scoring.encode(base.tokenizer, chats(args.eval), cfg.train.max_length)
    if args.worker == "steps":
        return planned_steps(cfg, base, device, chats(args.train))
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


def job_trainer(cfg: Any, base: Any, device: Any, train_chats: list[Any], scratch: Path) -> Any:
    """The job's SFTTrainer for `cfg` on these conversations, its base loaded the job's way."""
    from datasets import Dataset

    return job_module("train").build_trainer(
        cfg, base, device, Dataset.from_list(train_chats), scratch
    )[0]


def planned_steps(cfg: Any, base: Any, device: Any, train_chats: list[Any]) -> dict[str, Any]:
    """Our defaults' optimizer steps and checkpoints on the reference 950 training rows."""
    import tempfile

    train = job_module("train")
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        trainer = job_trainer(cfg, base, device, train_chats, Path(scratch))
        steps = train.planned_steps(trainer)
    every = cfg.train.checkpoint_steps
    return {
        "rows": len(train_chats),
        "tokens": train.real_tokens(trainer),
        "packed_rows": len(trainer.train_dataset),
        "steps": steps,
        "checkpoints": steps // every if every else 0,
    }


def measure_training(
    cfg: Any, base: Any, device: Any, train_chats: list[Any]
) -> tuple[dict[str, Any], Any]:
    """Time `trainer.train()` (wall and CPU seconds); return the numbers and the trained model."""
    import tempfile

    import torch

    train = job_module("train")
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        trainer = job_trainer(cfg, base, device, train_chats, Path(scratch))
        if device.on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        cpu_started, started = cpu_seconds(), time.perf_counter()
        output = train.run_training(trainer, None)
        if device.on_cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    result = {
        "method": f"{device.method} {str(device.dtype).removeprefix('torch.')}",
        "tokens": round(train.real_tokens(trainer) * trainer.state.epoch),  # every epoch's
        "steps": trainer.state.global_step,
        "wall_s": wall,
        "cpu_s": cpu,
        "train_loss": output.training_loss,
        "peak_mem_gib": peak_memory_gib(device.on_cuda),
    }
    return result, trainer.model


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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

    def rates(self, clock: str) -> list[float]:
        """Real tokens per second of `clock` ("wall_s" or "cpu_s"), one per run."""
        return [run["tokens"] / run[clock] for run in self.runs]

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)


def spread(values: list[float], digits: int = 2) -> str:
    """`median [min-max]` of some values."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def spawn(kind: str, paths: dict[str, Path], score: bool = False) -> dict[str, Any]:
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
        env={**os.environ, "OMP_NUM_THREADS": str(TORCH_THREADS)},
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text(encoding="utf-8"))


def compare(
    paths: dict[str, Path], configs: list[str], repeats: int
) -> tuple[dict[str, Any], dict[str, Measured]]:
    """The base model's scores, then each configuration `repeats` times, interleaved."""
    base = spawn("base", paths, score=True)
    measured: dict[str, Measured] = {name: Measured([]) for name in configs}
    for repeat in range(repeats):
        for name in configs:
            run = spawn(name, paths, score=repeat == 0)
            measured[name].runs.append(run)
            print(
                f"  {name} run {repeat + 1}/{repeats}: {run['wall_s']:.2f} s wall, "
                f"{run['cpu_s']:.2f} s CPU",
                flush=True,
            )
    return base, measured


def table(base: dict[str, Any], measured: dict[str, Measured]) -> list[str]:
    """A Markdown table, one row per configuration (plus the untrained base for reference)."""
    header = (
        "| config | method | real tokens | optimizer steps | wall s, median [min-max] "
        "| CPU s (user+sys), median [min-max] | tokens/wall s | tokens/CPU s "
        "| peak memory (GiB) | eval loss | emoji-only | exact match | emoji F1 |"
    )
    lines = [header, "|" + "---|" * 13]
    for name, runs in measured.items():
        first = runs.first
        lines.append(
            f"| {name} | {first['method']} | {first['tokens']} | {first['steps']} "
            f"| {spread([r['wall_s'] for r in runs.runs])} "
            f"| {spread([r['cpu_s'] for r in runs.runs])} "
            f"| {statistics.median(runs.rates('wall_s')):.0f} "
            f"| {statistics.median(runs.rates('cpu_s')):.0f} "
            f"| {runs.median('peak_mem_gib'):.2f} " + scores(first)
        )
    lines.append("| base (untrained) | - | - | - | - | - | - | - | - " + scores(base))
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


def speedups(ours: Measured, codelab: Measured, clock: str) -> tuple[float, list[float]]:
    """Ratio of median tokens/s, and the ratio of each interleaved pair of runs (the spread)."""
    ratio = statistics.median(ours.rates(clock)) / statistics.median(codelab.rates(clock))
    pairs = [a / b for a, b in zip(ours.rates(clock), codelab.rates(clock), strict=True)]
    return ratio, pairs


def gate_verdict(ours: dict[str, Any], base: dict[str, Any]) -> str:
    """The pipeline's default (strict) evaluation gate applied to our model's metrics."""
    sys.path.insert(0, str(REPO_ROOT))
    from core.quality_gate import QualityThresholds, quality_problems
    from flows.settings import QualitySettings

    metrics = {**ours, **{f"base_{name}": value for name, value in base.items()}}
    problems = quality_problems(metrics, QualityThresholds(**QualitySettings().model_dump()))
    return "passes" if not problems else "fails: " + "; ".join(problems)


def write_summary(path: Path, measured: dict[str, Measured], clock: str, verdict: str) -> None:
    """The medians per configuration and the verdict line, for bench/gpu_check.sh's table."""
    configs = {
        name: {
            "method": runs.first["method"],
            "steps": runs.first["steps"],
            "tokens_per_s": statistics.median(runs.rates(clock)),
            "peak_mem_gib": runs.median("peak_mem_gib"),
            "wall_s": runs.median("wall_s"),
            "eval_loss": loss_text(runs.first),
        }
        for name, runs in measured.items()
    }
    path.write_text(json.dumps({"configs": configs, "verdict": verdict}, indent=2), "utf-8")


def conditions(on_gpu: bool, repeats: int, rows: tuple[int, int]) -> str:
    """What the numbers depend on, printed above the table."""
    import torch

    if on_gpu:
        where = f"GPU {torch.cuda.get_device_name(0)}, gemma-3-1b architecture (random weights)"
    else:
        where = (
            f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{TORCH_THREADS} torch thread per run, demo base of demo/tiny_model.py"
        )
    return (
        f"{where}; {rows[1]} training rows, {rows[0]} held out; "
        f"{repeats} interleaved runs per config; 1-min load average {os.getloadavg()[0]:.2f} "
        "(other processes share these cores)"
    )


def main(argv: list[str] | None = None) -> int:
    """Prepare model and rows, measure the configurations, print the table and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration")
    parser.add_argument(
        "--work-dir", type=Path, default=REPO_ROOT / ".pipeline" / "bench", help="models, data"
    )
    parser.add_argument(
        "--summary", type=Path, help="also write the per-config figures as JSON (gpu_check.sh)"
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
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    eval_rows, train_rows = split_rows(reference=on_gpu)
    paths = {
        "work": work,
        "eval": write_jsonl(work / "eval.jsonl", eval_rows),
        "train": write_jsonl(work / "train.jsonl", train_rows),
    }
    paths["model"] = prepare_model(work, paths["train"], on_gpu)
    reference = write_jsonl(work / "reference-train.jsonl", split_rows(reference=True)[1])
    started = time.perf_counter()
    plan = spawn("steps", {**paths, "train": reference})
    configs = list(GPU_CONFIGS if on_gpu else CPU_CONFIGS)
    base, measured = compare(paths, configs, args.repeats)
    ours, codelab = measured["ours"], measured["codelab"]
    clock = "wall_s" if on_gpu else "cpu_s"
    speedup, pairs = speedups(ours, codelab, clock)
    wall_speedup, wall_pairs = speedups(ours, codelab, "wall_s")
    print()
    print(conditions(on_gpu, args.repeats, (len(eval_rows), len(train_rows))))
    print()
    print("\n".join(table(base, measured)))
    print()
    print(
        f"speedup (tokens per {'wall' if on_gpu else 'CPU'} second, ratio of medians): "
        f"{speedup:.2f}; per interleaved pair {spread(pairs)}"
    )
    print(f"speedup by wall time: {wall_speedup:.2f}; per interleaved pair {spread(wall_pairs)}")
    print(
        f"reference workload (1000 rows, {plan['rows']} trained on) with our defaults: "
        f"{plan['tokens']} tokens in {plan['packed_rows']} packed rows, {plan['steps']} "
        f"optimizer steps, {plan['checkpoints']} checkpoints"
    )
    print(f"default evaluation gate on ours: {gate_verdict(ours.first, base)}")
    print(f"(bench took {time.perf_counter() - started:.0f} s)")
    verdict = (
        f"speedup_vs_codelab={speedup:.2f} eval_loss_ours={loss_text(ours.first)} "
        f"eval_loss_codelab={loss_text(codelab.first)} "
        f"emoji_f1_ours={ours.first['emoji_f1']:.2f} "
        f"emoji_f1_codelab={codelab.first['emoji_f1']:.2f} "
        f"emoji_f1_base={base['emoji_f1']:.2f} "
        f"emoji_only_ours={ours.first['emoji_only_rate']:.2f} "
        f"emoji_only_base={base['emoji_only_rate']:.2f} "
        f"steps_1000_rows={plan['steps']}"
    )
    if args.summary:
        write_summary(args.summary, measured, clock, verdict)
    print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
