"""The base model: find it, check it is a chat model, and load it for training or scoring.

Precision rules (why they are not options): Gemma 3 overflows in fp16 (empty or NaN answers),
so a GPU computes in bf16 and a CPU in fp32. LoRA (the default) trains against the base's own
weights in that dtype; QLoRA (`--method qlora`, for models whose bf16 weights do not fit) stores
the frozen base in 4-bit NF4 with double quantisation and computes in that dtype.

The merge must reproduce the function that was trained, so it starts from the weights the
adapter saw — for QLoRA the NF4-dequantised ones, not the original bf16 ones — adds the adapter
in fp32 and rounds once to the serving dtype. Measured on the tiny model (held-out loss of the
merged model vs the adapter on its training base): QLoRA merged into the original weights is off
by +0.26 % (fp32) / +0.48 % (bf16), merged in fp32 into the dequantised ones by +0.02 % / 0.00 %.

Attention is pinned per device (ATTENTION): packed training rows are one flat sequence whose
`position_ids` restart at each example, and transformers turns that into a block-diagonal mask
for the SDPA kernel; tests/train/test_packing.py checks examples never attend to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import revisions
from config import InputArguments, InputError

HUB_MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "tokenizer.model", "*.txt"]
# The attention kernel per device. SDPA on both: it honours packed `position_ids` (see the
# module docstring) and needs no extra package; flash-attention would be a compiled CUDA
# extension outside the pinned image, and eager is SDPA's slow reference.
ATTENTION = {"cpu": "sdpa", "cuda": "sdpa"}


@dataclass(frozen=True)
class BaseModel:
    """A local model folder, its tokenizer and the exact revision it holds."""

    path: Path
    tokenizer: Any
    revision: str


@dataclass(frozen=True)
class Device:
    """Where the job computes, in which dtype, and with which adapter method."""

    on_cuda: bool
    dtype: Any
    method: str


def resolve_model(inputs: InputArguments) -> BaseModel:
    """A local folder as it is; a hub id downloaded once, up front, at its revision."""
    from transformers import AutoTokenizer

    path = Path(inputs.model).expanduser()
    if path.is_dir():
        revision = revisions.local_revision(path)
    elif inputs.model.startswith(("/", ".", "~")):
        raise InputError(f"model directory {path} does not exist; pass a dir or hub id")
    else:
        path = _download(inputs)
        revision = path.name  # snapshot folders are named by their commit sha
    if not (path / "config.json").is_file():
        raise InputError(f"{path} has no config.json; pass a transformers model directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a tokenizer from {path} ({exc})") from exc
    if not tokenizer.chat_template:
        raise InputError(
            f"model {inputs.model!r} has no chat template; use an instruction-tuned "
            "(-it) model or add chat_template.jinja"
        )
    return BaseModel(path=path, tokenizer=tokenizer, revision=revision)


def _download(inputs: InputArguments) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            snapshot_download(
                inputs.model, revision=inputs.model_revision, allow_patterns=HUB_MODEL_FILES
            )
        )
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as exc:
        raise InputError(
            f"model {inputs.model!r}@{inputs.model_revision} not found "
            f"({type(exc).__name__}); check the id, revision and HF_TOKEN"
        ) from exc
    except LocalEntryNotFoundError as exc:
        if not constants.HF_HUB_OFFLINE:
            raise  # hub unreachable while online: transient, exit 1
        raise InputError(
            f"model {inputs.model!r} is neither a local directory nor in the "
            "offline hub cache; pass a local model dir"
        ) from exc


def pick_device(requested_method: str) -> Device:
    """bf16 on a CUDA GPU (fp32 on CPU); auto -> lora (a 1B model in bf16 fits any 24 GB GPU)."""
    import torch

    on_cuda = torch.cuda.is_available()
    if requested_method == "qlora" and not _has_bitsandbytes():
        raise InputError("--method qlora needs bitsandbytes; install it or use --method lora")
    method = "lora" if requested_method == "auto" else requested_method
    dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    return Device(on_cuda=on_cuda, dtype=dtype, method=method)


def attention_for(device: Device) -> str:
    """The pinned attention implementation for this device (ATTENTION)."""
    return ATTENTION["cuda" if device.on_cuda else "cpu"]


def _has_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def load_for_training(path: Path, device: Device) -> Any:
    """The base to train an adapter on: 4-bit NF4 for qlora, the compute dtype for lora."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": device.dtype, "attn_implementation": attention_for(device)}
    if device.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=device.dtype,
        )
        if device.on_cuda:
            kwargs["device_map"] = {"": torch.cuda.current_device()}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def load_for_inference(path: Path, device: Device) -> Any:
    """An unquantised model in the compute dtype, on the compute device, in eval mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=device.dtype, attn_implementation=attention_for(device)
    )
    return model.to("cuda" if device.on_cuda else "cpu").eval()


def load_for_merge(path: Path, device: Device) -> Any:
    """The weights the adapter was trained against, in fp32: the base merges into these.

    For QLoRA that is the NF4 base dequantised (as the training forward pass saw it); for LoRA
    the base itself. fp32 so the adapter's small deltas are added without rounding.
    """
    import torch

    if device.method == "qlora":
        return load_for_training(path, device).dequantize(dtype=torch.float32).to(torch.float32)
    return load_for_inference(path, Device(device.on_cuda, torch.float32, device.method))


def free_memory() -> None:
    """Release a model before the next one loads (GPU memory is not returned on its own)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
