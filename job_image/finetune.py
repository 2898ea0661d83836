#!/usr/bin/env python3
"""Fine-tune a chat model to translate text to emoji with (Q)LoRA, evaluate it against its base
model, merge it, and publish one immutable, manifest-sealed model folder.

Why this script is standalone: it is the whole training job. It runs inside the training
container (Cloud Run job) and as a plain local subprocess, so it imports no pipeline code
(no prefect, flows, tasks, core or demo) — only its sibling modules — and talks to its caller
only through:

- its options (config.yaml < --config FILE < FT_<OPTION> environment variables < CLI flags;
  see `--help` and config.py),
- `PROGRESS {json}` lines on stdout (phases load, eval_base, train, merge, save, eval),
- the output folder, which appears complete or not at all: everything is written into a
  sibling `<output-dir>.partial-<random>` folder, `MANIFEST.json` last, then renamed;
  resumable checkpoints live in `<output-dir>.checkpoints/` until the model is published,
- its exit code: 0 done (or already done for this lineage key), 2 bad input (one `error:` line,
  nothing written), 1 anything else.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # keep job_image/ byte-identical: its content hash tags the image
# Sibling modules: Python puts the script's own directory on sys.path.
import checkpoints  # noqa: E402
import model_folder  # noqa: E402
from config import CONFIG_FLAG, InputError, JobConfig, build_parser, parse_config  # noqa: E402
from joblog import log, progress, utc_now  # noqa: E402
from modeling import (  # noqa: E402
    BaseModel,
    Device,
    free_memory,
    load_for_inference,
    pick_device,
    resolve_model,
)
from publish import (  # noqa: E402
    build_manifest,
    combined_metrics,
    make_servable,
    merge_adapter,
    write_metrics_file,
)
from rows import Splits, load_splits  # noqa: E402
from scoring import Example, encode, evaluate  # noqa: E402
from train import train_adapter  # noqa: E402


def already_published(cfg: JobConfig) -> bool:
    """True when this exact model version is already published (rerun = no-op)."""
    out = Path(cfg.output.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output-dir {out} is a file; pass a folder path")
    try:
        key = model_folder.read_manifest_key(out) if out.is_dir() else None
    except model_folder.ManifestError as exc:
        raise InputError(str(exc)) from exc
    if key is not None and key != cfg.output.lineage_key:
        raise InputError(
            f"--output-dir {out} already holds lineage key {key!r}, not "
            f"{cfg.output.lineage_key!r}; published model folders are immutable, "
            "use models/<lineage-key>/"
        )
    return key == cfg.output.lineage_key


def run(cfg: JobConfig) -> int:
    """Validate everything, then eval base → train → merge → save → eval → manifest → publish."""
    created_at = utc_now()
    output_dir = Path(cfg.output.output_dir).resolve()
    checkpoint_dir = checkpoints.folder_for(output_dir)
    if already_published(cfg):
        checkpoints.remove(checkpoint_dir, log)  # left only if a run died right after publishing
        log(f"{output_dir} already holds lineage key {cfg.output.lineage_key}; nothing to do")
        return 0
    quiet_libraries()
    progress("load", 0, 2)
    splits = load_splits(cfg.inputs)
    progress("load", 1, 2)
    base = resolve_model(cfg.inputs)
    device = pick_device(cfg.lora.method)
    progress("load", 2, 2)
    log(
        f"method={device.method} device={'cuda' if device.on_cuda else 'cpu'} "
        f"dtype={device.dtype} train={len(splits.train_rows)} eval={len(splits.eval_rows)} "
        f"model={base.path}@{base.revision} dataset@{splits.revision}"
    )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    model_folder.clear_leftovers(output_dir, log)
    work_dir = None
    if cfg.train.checkpoint_steps:
        work_dir = checkpoint_dir
        checkpoints.prepare(work_dir, cfg.output.lineage_key, log)
    examples = encode(base.tokenizer, splits.eval_rows, cfg.train.max_length)
    base_scores = base_metrics(cfg, base, device, examples, work_dir)
    partial = model_folder.new_partial_dir(output_dir)
    try:
        metrics = build_candidate(
            cfg, base, device, splits, examples, base_scores, work_dir, partial, created_at
        )
        model_folder.publish(partial, output_dir, cfg.output.lineage_key, log)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    checkpoints.remove(checkpoint_dir, log)
    log(f"published {output_dir}: {json.dumps(metrics)}")
    return 0


def base_metrics(
    cfg: JobConfig,
    base: BaseModel,
    device: Device,
    examples: list[Example],
    work_dir: Path | None,
) -> dict[str, Any]:
    """The base model's scores on the held-out rows (kept with the checkpoints for a resume)."""
    saved = checkpoints.load_base_metrics(work_dir) if work_dir else None
    if saved is not None:
        log("base model metrics reused from an earlier attempt")
        return saved
    model = load_for_inference(base.path, device)
    metrics = evaluate(model, base.tokenizer, examples, cfg.evaluation, "eval_base")
    del model
    free_memory()
    if work_dir:
        checkpoints.save_base_metrics(work_dir, metrics)
    return metrics


def build_candidate(
    cfg: JobConfig,
    base: BaseModel,
    device: Device,
    splits: Splits,
    examples: list[Example],
    base_scores: dict[str, Any],
    work_dir: Path | None,
    partial: Path,
    created_at: str,
) -> dict[str, Any]:
    """Train, merge into `partial`, score the merged model, write metrics.json and the manifest."""
    from transformers import set_seed

    with tempfile.TemporaryDirectory(prefix="finetune-") as scratch_name:
        scratch = Path(scratch_name)
        set_seed(cfg.inputs.seed)
        trained = train_adapter(
            cfg, base, device, splits.train_rows, work_dir or scratch, scratch / "adapter"
        )
        merge_adapter(base, scratch / "adapter", partial, device)
    tuned = load_for_inference(partial, device)
    tuned_scores = evaluate(tuned, base.tokenizer, examples, cfg.evaluation, "eval")
    del tuned
    free_memory()
    metrics = combined_metrics(tuned_scores, base_scores, trained)
    write_metrics_file(partial, metrics)
    make_servable(partial)
    manifest = build_manifest(
        cfg, base, splits.revision, device, trained, metrics, partial, created_at
    )
    model_folder.write_manifest(partial, manifest)
    return metrics


# Notices nobody running this job can act on, silenced where they are raised (message-exact,
# so any other warning from the same place still shows):
# - bitsandbytes, on import on a CPU with AVX512-BF16: an optional hub kernel (`pip install
#   kernels`, downloaded at run time) would speed up CPU QLoRA; the built-in kernel is used.
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
# - transformers 5.2x, when trl/peft ask the model `is_gradient_checkpointing` during training.
DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)


def quiet_libraries() -> None:
    """Keep stdout readable for humans and the PROGRESS parser: no progress bars or advisories."""
    logging.getLogger(BNB_CPU_LOGGER).addFilter(
        lambda record: not str(record.msg).startswith(BNB_KERNELS_NOTICE)
    )
    for message in DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def read_config(argv: Sequence[str]) -> JobConfig:
    """`parse_config`, with the flags checked first so a typo is one `error:` line (exit 2).

    trl's parser answers an unknown flag with a ValueError listing the leftover arguments
    (a traceback and exit 1 here); naming the flag, with the nearest real one, is the fix.
    Flags must be spelt out: argparse's prefix matching would let a typo pick an option.
    """
    known = {flag for action in build_parser()._actions for flag in action.option_strings}
    known.add(CONFIG_FLAG)
    for arg in argv:
        if arg == "--":
            break
        flag = arg.split("=", 1)[0]
        if arg.startswith("--") and flag not in known:
            nearest = difflib.get_close_matches(flag, sorted(known), n=1)
            hint = f"; did you mean {nearest[0]}?" if nearest else ""
            raise InputError(f"unknown option {flag}{hint} (see --help)")
    try:
        return parse_config(argv)
    except ValueError as exc:  # what trl still leaves over, e.g. a stray positional argument
        raise InputError(f"{exc} (see --help)") from exc


def main(argv: list[str] | None = None) -> int:
    """Entry point: map outcomes to exit codes (0 ok, 2 bad input, 1 failure)."""
    try:
        return run(read_config(sys.argv[1:] if argv is None else argv))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"error: training failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
