"""Turn a trained adapter into the published model folder: merge, metrics, manifest.

The merged folder is what servers load: plain safetensors weights — the weights the adapter
was trained against (for QLoRA the dequantised NF4 base) with the adapter added in fp32 and
rounded once to the compute dtype — the tokenizer, the chat template, a generation config that stops
at `<end_of_turn>`, and `metrics.json`; `MANIFEST.json` (written by model_folder, last) lists
all of them with size and sha256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import model_folder
from config import JobConfig
from joblog import progress, utc_now
from modeling import BaseModel, Device, free_memory, load_for_merge
from train import TrainResult

METRICS_FILE = "metrics.json"
END_OF_TURN = "<end_of_turn>"


def merge_adapter(base: BaseModel, adapter_dir: Path, dest: Path, device: Device) -> None:
    """Fold the adapter into its training base in fp32, cast once, save a servable folder."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    progress("merge", 0, 1)
    merged = (
        PeftModel.from_pretrained(load_for_merge(base.path, device), str(adapter_dir))
        .merge_and_unload()
        .to(device.dtype)
    )
    tokenizer = AutoTokenizer.from_pretrained(base.path)  # fresh: untouched by the trainer
    stop_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    merged.generation_config.eos_token_id = list(
        dict.fromkeys(i for i in stop_ids if i is not None and i != tokenizer.unk_token_id)
    )
    if tokenizer.pad_token_id is not None:
        merged.generation_config.pad_token_id = tokenizer.pad_token_id
    progress("merge", 1, 1)
    progress("save", 0, 1)
    merged.save_pretrained(dest, max_shard_size="1000GB")  # v5 always writes safetensors
    tokenizer.save_pretrained(dest)
    if not (dest / "chat_template.jinja").is_file():
        (dest / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    del merged
    free_memory()
    model_folder.check_model_files(dest)
    progress("save", 1, 1)


def combined_metrics(
    tuned: dict[str, Any], base: dict[str, Any], trained: TrainResult
) -> dict[str, Any]:
    """Flat numbers for the manifest and the gate: the tuned model's, then `base_*` ones."""
    scored_on_same_rows = {name: value for name, value in base.items() if name != "eval_examples"}
    return {
        **tuned,
        "train_loss": trained.train_loss,
        **{f"base_{name}": value for name, value in scored_on_same_rows.items()},
    }


def write_metrics_file(folder: Path, metrics: dict[str, Any]) -> None:
    """metrics.json next to the weights, so a copied folder carries its own scores."""
    text = json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n"
    (folder / METRICS_FILE).write_text(text, encoding="utf-8")


def make_servable(folder: Path) -> None:
    """Some writers create 0600 files; servers may run as another user."""
    for path in folder.iterdir():
        path.chmod(0o644)


def build_manifest(
    cfg: JobConfig,
    base: BaseModel,
    data_revision: str,
    device: Device,
    trained: TrainResult,
    metrics: dict[str, Any],
    folder: Path,
    created_at: str,
) -> dict[str, Any]:
    """The MANIFEST.json document (format_version 1); the verifier depends on this shape."""
    hyperparameters = cfg.hyperparameters()
    hyperparameters["method"] = device.method
    hyperparameters["loss"] = trained.loss_mode
    inputs = cfg.inputs
    return {
        "format_version": model_folder.FORMAT_VERSION,
        "lineage_key": cfg.output.lineage_key,
        "lineage": cfg.output.lineage(),
        "files": model_folder.file_entries(folder),
        "metrics": metrics,
        "training": {
            "method": device.method,
            "dtype": str(device.dtype).removeprefix("torch."),
            "train_examples": trained.train_examples,
            "train_tokens": trained.train_tokens,
            "steps": trained.steps,
            "resumed_from_step": trained.resumed_from_step,
            "runtime_s": trained.runtime_s,
            "base_model": inputs.model,
            "base_model_revision": base.revision,
            "base_model_revision_requested": inputs.model_revision,
            "dataset": inputs.dataset,
            "dataset_revision": data_revision,
            "dataset_revision_requested": inputs.dataset_revision,
            "sample_size": inputs.sample_size,
            "eval_size": inputs.eval_size,
            "seed": inputs.seed,
            "hyperparameters": hyperparameters,
        },
        "created_at": created_at,
        "completed_at": utc_now(),
    }
