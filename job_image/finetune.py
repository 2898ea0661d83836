#!/usr/bin/env python3
"""Fine-tune a chat model to translate text to emoji with (Q)LoRA, merge it, evaluate it, and
publish one immutable, manifest-sealed model folder.

Why this file is standalone: it is the whole training job. It runs inside the training
container (Cloud Run job) and as a plain local subprocess, so it imports no pipeline code
(no prefect, flows, tasks, core or demo) and talks to its caller only through:

- its arguments (CLI flags or `FT_<OPTION>` environment variables; the CLI wins),
- `PROGRESS {json}` lines on stdout (phases load, train, eval, merge, save),
- the output folder, which appears complete or not at all: everything is written into a
  sibling `<output-dir>.partial-<random>` folder, `MANIFEST.json` last, then renamed,
- its exit code: 0 done (or already done for this lineage key), 2 bad input (one `error:` line,
  nothing written), 1 anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

sys.dont_write_bytecode = True  # keep job_image/ byte-identical: its content hash tags the image
import emoji_metrics  # noqa: E402  (sibling modules: Python puts the script's dir on sys.path)
import model_folder  # noqa: E402

PROMPT_PREFIX = "Translate to emoji: "
REQUIRED_COLUMNS = ("text", "emoji")
HUB_MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "tokenizer.model", "*.txt"]
METHODS = ("auto", "lora", "qlora")
DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


class InputError(Exception):
    """The caller asked for something impossible; retrying the same request cannot help."""


# --------------------------------------------------------------------------- CLI


@dataclass(frozen=True)
class JobArgs:
    """Parsed, typed job arguments (one field per CLI option)."""

    model: str
    model_revision: str | None
    dataset: str
    dataset_revision: str | None
    sample_size: int
    eval_size: int
    seed: int
    output_dir: str
    lineage_key: str
    lineage_json: str
    method: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: str
    epochs: float
    max_steps: int
    learning_rate: float
    batch_size: int
    grad_accum: int
    max_length: int
    eval_max_new_tokens: int
    logging_steps: int


# (flag, type, default, help); None default + flag in REQUIRED means "must be given".
OPTIONS: list[tuple[str, type, Any, str]] = [
    ("--model", str, None, "base model: hub id or local directory"),
    ("--model-revision", str, None, "hub revision (commit/tag) of the base model"),
    ("--dataset", str, None, "hub dataset id, or a local .jsonl/.csv with text,emoji columns"),
    ("--dataset-revision", str, None, "hub revision of the dataset"),
    ("--sample-size", int, 1000, "rows drawn at random (seeded); must not exceed the data"),
    ("--eval-size", int, 50, "rows of the sample held out for evaluation (disjoint from train)"),
    ("--seed", int, 42, "seed for sampling, LoRA init and training"),
    ("--output-dir", str, None, "final model folder, e.g. <store>/models/<lineage-key>"),
    ("--lineage-key", str, None, "identity of this model version; makes reruns idempotent"),
    ("--lineage-json", str, "{}", "JSON object of lineage inputs, recorded in the manifest"),
    ("--method", str, "auto", "auto|lora|qlora (auto = qlora on CUDA with bitsandbytes)"),
    ("--lora-r", int, 16, "LoRA rank"),
    ("--lora-alpha", int, 32, "LoRA alpha"),
    ("--lora-dropout", float, 0.05, "LoRA dropout"),
    ("--target-modules", str, DEFAULT_TARGETS, "comma-separated module names to adapt"),
    ("--epochs", float, 1.0, "training epochs (ignored when --max-steps > 0)"),
    ("--max-steps", int, -1, "optimizer steps; -1 = use --epochs"),
    ("--learning-rate", float, 2e-4, "peak learning rate"),
    ("--batch-size", int, 4, "per-device batch size"),
    ("--grad-accum", int, 2, "gradient accumulation steps"),
    ("--max-length", int, 256, "max tokens per training example (longer ones are truncated)"),
    ("--eval-max-new-tokens", int, 16, "generation budget per held-out example"),
    ("--logging-steps", int, 5, "emit a train PROGRESS line every N steps"),
]
REQUIRED = ("--model", "--dataset", "--output-dir", "--lineage-key")
# Options recorded under training.hyperparameters in the manifest.
# fmt: off
HYPERPARAMETERS = frozenset((
    "lora_r", "lora_alpha", "lora_dropout", "target_modules", "epochs", "max_steps",
    "learning_rate", "batch_size", "grad_accum", "max_length", "eval_max_new_tokens",
    "logging_steps",
))
# fmt: on


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become InputError, so they exit 2 as one `error:` line."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see --help)")


def env_name(flag: str) -> str:
    """`--lora-r` -> `FT_LORA_R`: the env var that supplies a flag's default."""
    return "FT_" + flag.lstrip("-").replace("-", "_").upper()


def build_parser() -> argparse.ArgumentParser:
    """Build the CLI; a non-empty `FT_*` env var becomes the flag's default (CLI still wins)."""
    parser = _Parser(
        prog="finetune.py",
        description="QLoRA/LoRA fine-tune a chat model on Text2Emoji-style data, merge, "
        "evaluate and publish a manifest-sealed model folder.",
        epilog="Each option may also come from FT_<OPTION> (e.g. FT_LORA_R). Exit codes: "
        "0 done or already done, 2 bad input (nothing written), 1 failure.",
    )
    for flag, kind, default, text in OPTIONS:
        env = env_name(flag)
        from_env = os.environ.get(env) or None  # argparse runs `type` on string defaults
        shown = "required" if flag in REQUIRED else f"default {default}"
        parser.add_argument(
            flag,
            type=kind,
            default=from_env if from_env is not None else default,
            help=f"{text} [{shown}; env {env}]",
        )
    return parser


def parse_args(argv: list[str]) -> JobArgs:
    """Parse argv + env into JobArgs and reject values that cannot work."""
    args = JobArgs(**vars(build_parser().parse_args(argv)))
    for flag in REQUIRED:
        if not getattr(args, flag.lstrip("-").replace("-", "_")):
            raise InputError(f"{flag} is required (or set {env_name(flag)})")
    if args.method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    positive = ("sample_size", "eval_size", "lora_r", "lora_alpha", "batch_size", "grad_accum")
    for name in (*positive, "max_length", "eval_max_new_tokens", "logging_steps"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1")
    if args.eval_size >= args.sample_size:
        raise InputError("--eval-size must be smaller than --sample-size (training needs rows)")
    if not 0 <= args.lora_dropout < 1 or args.learning_rate <= 0:
        raise InputError("--lora-dropout must be in [0, 1) and --learning-rate > 0")
    if args.max_steps < 1 and args.epochs <= 0:
        raise InputError("set --epochs > 0 or --max-steps >= 1")
    if not target_modules(args):
        raise InputError("--target-modules is empty; e.g. q_proj,v_proj")
    parse_lineage(args.lineage_json)
    return args


def target_modules(args: JobArgs) -> list[str]:
    """The LoRA target module names as a list."""
    return [m.strip() for m in args.target_modules.split(",") if m.strip()]


def parse_lineage(text: str) -> dict[str, Any]:
    """Lineage must be a JSON object: the verifier and the pipeline read keys from it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--lineage-json is not valid JSON ({exc.msg}); pass an object") from exc
    if not isinstance(value, dict):
        raise InputError('--lineage-json must be a JSON object, e.g. \'{"base_model": "..."}\'')
    return value


# --------------------------------------------------------------------------- small helpers


def progress(phase: str, step: int, total: int, **extra: float | None) -> None:
    """Emit one machine-readable progress line; the orchestrator parses these."""
    record: dict[str, Any] = {"phase": phase, "step": step, "total": total}
    record.update({k: finite_or_none(v) for k, v in extra.items()})
    print("PROGRESS " + json.dumps(record), flush=True)


def log(message: str) -> None:
    """Free-form log line, flushed so it interleaves correctly with PROGRESS lines."""
    print(message, flush=True)


def finite_or_none(value: float | None) -> float | None:
    """NaN/inf are not JSON; record them as null rather than writing an unreadable manifest."""
    return value if value is None or math.isfinite(value) else None


def utc_now() -> str:
    """ISO-8601 UTC timestamp with a Z suffix."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_output_dir(args: JobArgs) -> bool:
    """True when this exact model version is already published (rerun = no-op)."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output-dir {out} is a file; pass a folder path")
    try:
        key = model_folder.read_manifest_key(out) if out.is_dir() else None
    except model_folder.ManifestError as exc:
        raise InputError(str(exc)) from exc
    if key is not None and key != args.lineage_key:
        raise InputError(
            f"--output-dir {out} already holds lineage key {key!r}, not {args.lineage_key!r}; "
            "published model folders are immutable, use models/<lineage-key>/"
        )
    return key == args.lineage_key


# --------------------------------------------------------------------------- inputs


def read_dataset(args: JobArgs) -> Any:
    """Read the raw rows: a local .jsonl/.csv file, or a hub dataset at a revision."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub import constants

    path = Path(args.dataset).expanduser()
    if path.suffix.lower() in {".jsonl", ".json", ".csv"} or path.exists():
        if not path.is_file():
            raise InputError(f"dataset file {path} does not exist; pass a .jsonl/.csv path")
        if not path.read_text(encoding="utf-8", errors="replace").strip():
            raise InputError(f"dataset file {path} is empty; it needs rows with text and emoji")
        builder = "csv" if path.suffix.lower() == ".csv" else "json"
        try:
            return load_dataset(builder, data_files=str(path), split="train")
        except Exception as exc:  # any parse failure of a local file is the caller's to fix
            reason = exc.__cause__ or exc
            raise InputError(f"dataset file {path} could not be parsed ({reason})") from exc
    try:
        return load_dataset(args.dataset, revision=args.dataset_revision, split="train")
    except DatasetNotFoundError as exc:
        raise InputError(
            f"dataset {args.dataset!r} not found on the hub; check id/revision"
        ) from exc
    except ConnectionError as exc:
        if not constants.HF_HUB_OFFLINE:
            raise  # hub unreachable while online: transient, exit 1
        raise InputError(
            f"dataset {args.dataset!r} is not a local file and the hub is offline "
            "(HF_HUB_OFFLINE=1); pass a .jsonl/.csv path"
        ) from exc


def load_rows(args: JobArgs) -> tuple[Any, Any]:
    """Validate, shuffle and split the data into (eval, train) conversational datasets."""
    data = read_dataset(args)
    missing = [c for c in REQUIRED_COLUMNS if c not in data.column_names]
    if missing:
        raise InputError(
            f"dataset lacks column(s) {missing} (has {data.column_names}); "
            "it needs Text2Emoji's schema: text, emoji"
        )
    data = data.filter(
        lambda r: all(isinstance(r[c], str) and r[c].strip() for c in ("text", "emoji"))
    )
    if len(data) == 0:
        raise InputError(f"dataset {args.dataset!r} has no rows with non-empty text and emoji")
    if args.sample_size > len(data):
        raise InputError(
            f"--sample-size {args.sample_size} exceeds the {len(data)} usable rows; lower it"
        )
    sample = data.shuffle(seed=args.seed).select(range(args.sample_size))
    sample = sample.map(to_messages, remove_columns=sample.column_names)
    return sample.select(range(args.eval_size)), sample.select(range(args.eval_size, len(sample)))


def to_messages(row: dict[str, Any]) -> dict[str, Any]:
    """One Text2Emoji row as a chat: the answer is the emoji string, nothing else."""
    return {
        "messages": [
            {"role": "user", "content": PROMPT_PREFIX + row["text"].strip()},
            {"role": "assistant", "content": row["emoji"].strip()},
        ]
    }


def resolve_model(args: JobArgs) -> tuple[Path, Any]:
    """Return (local model dir, tokenizer); a hub id is downloaded once, up front."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from transformers import AutoTokenizer

    path = Path(args.model).expanduser()
    if not path.is_dir():
        if args.model.startswith(("/", ".", "~")):
            raise InputError(f"model directory {path} does not exist; pass a dir or hub id")
        try:
            path = Path(
                snapshot_download(
                    args.model, revision=args.model_revision, allow_patterns=HUB_MODEL_FILES
                )
            )
        except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as exc:
            raise InputError(
                f"model {args.model!r}@{args.model_revision} not found "
                f"({type(exc).__name__}); check the id, revision and HF_TOKEN"
            ) from exc
        except LocalEntryNotFoundError as exc:
            if not constants.HF_HUB_OFFLINE:
                raise  # hub unreachable while online: transient, exit 1
            raise InputError(
                f"model {args.model!r} is neither a local directory nor in the "
                "offline hub cache; pass a local model dir"
            ) from exc
    if not (path / "config.json").is_file():
        raise InputError(f"{path} has no config.json; pass a transformers model directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a tokenizer from {path} ({exc})") from exc
    if not tokenizer.chat_template:
        raise InputError(
            f"model {args.model!r} has no chat template; use an instruction-tuned "
            "(-it) model or add chat_template.jinja"
        )
    return path, tokenizer


def resolve_method(requested: str, on_cuda: bool) -> str:
    """auto -> qlora on CUDA with bitsandbytes, else lora; qlora needs bitsandbytes."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        have_bnb = False
    else:
        have_bnb = True
    if requested == "qlora" and not have_bnb:
        raise InputError("--method qlora needs bitsandbytes; install it or use --method lora")
    if requested == "auto":
        return "qlora" if on_cuda and have_bnb else "lora"
    return requested


# --------------------------------------------------------------------------- train / merge / eval


@dataclass(frozen=True)
class TrainResult:
    """What the training phase reports into the manifest."""

    train_loss: float | None
    loss_mode: str
    train_examples: int
    steps: int
    runtime_s: float


def make_progress_callback() -> Any:
    """A TrainerCallback that turns trainer logs into `PROGRESS` train lines."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Remembers the last logged loss (the manifest's train_loss) and reports each log."""

        last_loss: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])
                progress("train", state.global_step, state.max_steps, loss=self.last_loss)

    return ProgressCallback()


def choose_loss_mode(tokenizer: Any) -> str:
    """Prefer trl's assistant-only loss; fall back to completion-only where trl cannot mask.

    Assistant-only loss needs `{% generation %}` markers; trl swaps in a marked copy of the
    templates it knows byte-for-byte (Gemma 3's among them) and raises for others. Masking the
    prompt of prompt/completion rows trains the same tokens (the answer + `<end_of_turn>`).
    """
    from trl.chat_template_utils import get_training_chat_template

    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return "completion_only"
    return "assistant_only"


def as_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """Split a two-turn chat into trl's conversational prompt/completion form."""
    return {"prompt": row["messages"][:1], "completion": row["messages"][1:]}


def train_adapter(
    args: JobArgs,
    method: str,
    model_dir: Path,
    tokenizer: Any,
    train_rows: Any,
    scratch: Path,
    dtype: Any,
) -> TrainResult:
    """SFT a LoRA adapter (on a 4-bit NF4 base for qlora) and save it to scratch/adapter."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    on_cuda = torch.cuda.is_available()
    load_kwargs: dict[str, Any] = {"dtype": dtype}
    if method == "qlora":
        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        if on_cuda:
            load_kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **load_kwargs)
    loss_mode = choose_loss_mode(tokenizer)
    if loss_mode == "completion_only":
        train_rows = train_rows.map(as_prompt_completion, remove_columns=["messages"])
    log(f"training: 4-bit={getattr(model, 'is_loaded_in_4bit', False)} loss={loss_mode}")
    config = SFTConfig(
        output_dir=str(scratch / "trainer"),
        seed=args.seed,
        data_seed=args.seed,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        assistant_only_loss=loss_mode == "assistant_only",
        completion_only_loss=loss_mode == "completion_only",
        logging_steps=args.logging_steps,
        bf16=dtype == torch.bfloat16,
        use_cpu=not on_cuda,
        activation_checkpointing=False,
        dataloader_pin_memory=on_cuda,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    peft_config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=target_modules(args),
        bias="none",
        task_type="CAUSAL_LM",
    )
    callback = make_progress_callback()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_rows,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    started = time.monotonic()
    output = trainer.train()
    runtime = time.monotonic() - started
    trainer.model.save_pretrained(scratch / "adapter")
    loss = callback.last_loss if callback.last_loss is not None else output.training_loss
    result = TrainResult(
        train_loss=finite_or_none(loss),
        loss_mode=loss_mode,
        train_examples=len(train_rows),
        steps=trainer.state.global_step,
        runtime_s=round(runtime, 3),
    )
    del trainer, model
    free_memory()
    return result


def free_memory() -> None:
    """Drop the training model before loading the full-precision base for merging."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def merge_adapter(model_dir: Path, adapter_dir: Path, dest: Path, dtype: Any) -> None:
    """Fold the adapter into an UNQUANTIZED base and save a plain, servable model folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress("merge", 0, 1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)  # fresh: untouched by the trainer
    stop_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    stop_ids = list(
        dict.fromkeys(i for i in stop_ids if i is not None and i != tokenizer.unk_token_id)
    )
    merged.generation_config.eos_token_id = stop_ids
    if tokenizer.pad_token_id is not None:
        merged.generation_config.pad_token_id = tokenizer.pad_token_id
    progress("merge", 1, 1)
    progress("save", 0, 1)
    merged.save_pretrained(dest, max_shard_size="1000GB")  # v5 always writes safetensors
    tokenizer.save_pretrained(dest)
    if not (dest / "chat_template.jinja").is_file():
        (dest / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    for path in dest.iterdir():  # some writers create 0600 files; servers may run as another user
        path.chmod(0o644)
    del base, merged
    free_memory()
    model_folder.check_model_files(dest)
    progress("save", 1, 1)


def evaluate(folder: Path, eval_rows: Any, args: JobArgs, dtype: Any) -> dict[str, Any]:
    """Score the SAVED merged model (what will be served) on the held-out rows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    greedy = GenerationConfig(
        max_new_tokens=args.eval_max_new_tokens,
        do_sample=False,
        eos_token_id=model.generation_config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    loss_sum, loss_tokens, answers, references = 0.0, 0, [], []
    for index, row in enumerate(eval_rows):
        prompt, full = chat_ids(tokenizer, row["messages"], args.max_length)
        with torch.no_grad():
            row_loss, row_tokens = answer_loss(model, prompt, full)
            answers.append(greedy_answer(model, tokenizer, prompt, greedy))
        loss_sum, loss_tokens = loss_sum + row_loss, loss_tokens + row_tokens
        references.append(row["messages"][1]["content"])
        if index < 5:
            question = row["messages"][0]["content"]
            log(f"eval sample: {question!r} -> {answers[-1]!r} (reference {references[-1]!r})")
        progress("eval", index + 1, len(eval_rows))
    del model
    free_memory()
    return {
        "eval_loss": finite_or_none(loss_sum / loss_tokens) if loss_tokens else None,
        "emoji_only_rate": emoji_metrics.emoji_only_rate(answers),
        "exact_match": emoji_metrics.exact_match_rate(answers, references),
        "eval_examples": len(answers),
    }


def chat_ids(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> tuple[Any, Any]:
    """(prompt ids ending in the model-turn header, full-conversation ids) as in training."""
    prompt = tokenizer.apply_chat_template(
        messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    return list(prompt), list(full)[:max_length]


def answer_loss(model: Any, prompt: list[int], full: list[int]) -> tuple[float, int]:
    """(summed loss, token count) over the answer tokens only — the tokens training scores."""
    import torch

    answer_tokens = len(full) - len(prompt)
    if answer_tokens <= 0 or full[: len(prompt)] != prompt:
        return 0.0, 0  # truncated away, or a template that is not prefix-preserving
    ids = torch.tensor([full], device=model.device)
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    return model(input_ids=ids, labels=labels).loss.item() * answer_tokens, answer_tokens


def greedy_answer(model: Any, tokenizer: Any, prompt: list[int], config: Any) -> str:
    """The model's greedy answer to one prompt, special tokens and outer whitespace removed."""
    import torch

    ids = torch.tensor([prompt], device=model.device)
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
    )
    return tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True).strip()


# --------------------------------------------------------------------------- main


def run(args: JobArgs) -> int:
    """Validate everything, then train → merge → save → eval → manifest → publish."""
    created_at = utc_now()
    if check_output_dir(args):
        log(f"{args.output_dir} already holds lineage key {args.lineage_key}; nothing to do")
        return 0
    lineage = parse_lineage(args.lineage_json)
    quiet_libraries()
    import torch
    from transformers import set_seed

    progress("load", 0, 2)
    eval_rows, train_rows = load_rows(args)
    progress("load", 1, 2)
    model_dir, tokenizer = resolve_model(args)
    on_cuda = torch.cuda.is_available()
    method = resolve_method(args.method, on_cuda)
    dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    progress("load", 2, 2)
    log(
        f"method={method} device={'cuda' if on_cuda else 'cpu'} dtype={dtype} "
        f"train={len(train_rows)} eval={len(eval_rows)} model={model_dir}"
    )

    output_dir = Path(args.output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    model_folder.clear_leftovers(output_dir, log)
    partial = model_folder.new_partial_dir(output_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="finetune-") as scratch_name:
            scratch = Path(scratch_name)
            set_seed(args.seed)
            trained = train_adapter(args, method, model_dir, tokenizer, train_rows, scratch, dtype)
            merge_adapter(model_dir, scratch / "adapter", partial, dtype)
        metrics = evaluate(partial, eval_rows, args, dtype)
        metrics["train_loss"] = trained.train_loss
        manifest = build_manifest(args, lineage, method, trained, metrics, partial, created_at)
        model_folder.write_manifest(partial, manifest)
        model_folder.publish(partial, output_dir, args.lineage_key, log)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    log(f"published {output_dir}: {json.dumps(metrics)}")
    return 0


def build_manifest(
    args: JobArgs,
    lineage: dict[str, Any],
    method: str,
    trained: TrainResult,
    metrics: dict[str, Any],
    folder: Path,
    created_at: str,
) -> dict[str, Any]:
    """The MANIFEST.json document (format_version 1); the verifier depends on this shape."""
    hyper = {k: v for k, v in asdict(args).items() if k in HYPERPARAMETERS}
    hyper["target_modules"] = target_modules(args)
    hyper["loss"] = trained.loss_mode
    return {
        "format_version": model_folder.FORMAT_VERSION,
        "lineage_key": args.lineage_key,
        "lineage": lineage,
        "files": model_folder.file_entries(folder),
        "metrics": metrics,
        "training": {
            "method": method,
            "train_examples": trained.train_examples,
            "steps": trained.steps,
            "runtime_s": trained.runtime_s,
            "base_model": args.model,
            "base_model_revision": args.model_revision,
            "dataset": args.dataset,
            "dataset_revision": args.dataset_revision,
            "sample_size": args.sample_size,
            "eval_size": args.eval_size,
            "seed": args.seed,
            "hyperparameters": hyper,
        },
        "created_at": created_at,
        "completed_at": utc_now(),
    }


def quiet_libraries() -> None:
    """Keep stdout readable for humans and the PROGRESS parser: no progress bars or advisories."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def main(argv: list[str] | None = None) -> int:
    """Entry point: map outcomes to exit codes (0 ok, 2 bad input, 1 failure)."""
    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"error: training failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
