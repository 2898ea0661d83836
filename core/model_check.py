"""The checks of a model folder that need torch and transformers.

- `architecture_problems`: stored tensor names, shapes and dtypes against the model that
  config.json defines, built on the meta device (exact, no memory). It needs only config.json
  and the headers, so it runs for any store, wherever torch is installed.
- `finite_problems` and `sample_answer`: NaN/Inf in the weights and a short generation.
  They read tensor data through the safetensors and transformers loaders, so they run only
  where the store exposes the folder on a local disk (`ArtifactStore.local_dir`).

This module imports torch on import; `core.verification` imports it only where torch is
installed, and falls back to `core.integrity.config_field_problems` elsewhere.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from core.integrity import (
    CONFIG_NAME,
    dtype_problems,
    lora_names,
    lora_problems,
    safetensors_dtype,
    some,
)
from core.safetensors_header import TensorInfo

MAX_NEW_TOKENS = 16
FINITE_CHUNK_ELEMENTS = 1 << 22  # 16 MiB of float32 per chunk keeps memory flat
# Float dtypes torch can hold; packed FP4/FP6 are left to the header checks.
FINITE_CHECKED_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"})


# --------------------------------------------------------------------------- vs architecture


@dataclass(frozen=True)
class ExpectedWeights:
    """Parameter names and shapes the architecture in config.json defines."""

    architecture: str
    shapes: Mapping[str, tuple[int, ...]]
    optional: frozenset[str]  # tied weights a checkpoint may omit
    dtype: str | None  # safetensors dtype code config.json declares, if any


def architecture_problems(config_bytes: bytes, tensors: Mapping[str, TensorInfo]) -> list[str]:
    """Names, shapes and dtypes must be exactly what the architecture in config.json loads.

    A merge that kept LoRA wrappers, dropped a layer or saved the wrong model class passes
    every checksum; only a comparison with the architecture catches it.
    """
    try:
        expected = expected_weights(config_bytes)
    except Exception as exc:  # any failure here means transformers cannot load the model
        return [f"config.json: cannot build the architecture ({type(exc).__name__}: {exc})"]
    return compare_tensors(tensors, expected)


def expected_weights(config_bytes: bytes) -> ExpectedWeights:
    """Instantiate the architecture on the meta device: exact names and shapes, no memory.

    config.json goes through a temporary folder so a remote store needs to download just
    those few bytes.
    """
    with tempfile.TemporaryDirectory(prefix="verify-config-") as tmp:
        Path(tmp, CONFIG_NAME).write_bytes(config_bytes)
        config = AutoConfig.from_pretrained(tmp)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    return ExpectedWeights(
        architecture=type(model).__name__,
        shapes=shapes,
        optional=_tied_names(model, config),
        dtype=_config_dtype(config),
    )


def _tied_names(model: torch.nn.Module, config: Any) -> frozenset[str]:
    """Weights that alias another one (lm_head.weight → embed_tokens) and may be omitted.

    transformers 5 exposes `all_tied_weights_keys` ({tied: source}, already empty when the
    config unties embeddings); older versions only have the class-level `_tied_weights_keys`.
    """
    tied = getattr(model, "all_tied_weights_keys", None)
    if tied is None:
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        if not getattr(text_config, "tie_word_embeddings", False):
            return frozenset()
        tied = getattr(model, "_tied_weights_keys", None) or ()
    return frozenset(tied)


def _config_dtype(config: Any) -> str | None:
    """config.json's dtype as transformers reads it, as a safetensors code."""
    value = getattr(config, "dtype", None)
    if value is None:
        value = config.to_dict().get("torch_dtype")
    return safetensors_dtype(value)


def compare_tensors(tensors: Mapping[str, TensorInfo], expected: ExpectedWeights) -> list[str]:
    """Every difference between the stored tensors and what the architecture expects."""
    problems = lora_problems(tensors)
    lora = lora_names(tensors)  # reported above, so not again as "unexpected"
    unexpected = sorted(set(tensors) - set(expected.shapes) - set(lora))
    if unexpected:
        problems.append(
            f"unexpected tensors not in {expected.architecture} per config.json: {some(unexpected)}"
        )
    missing = sorted(set(expected.shapes) - set(tensors) - expected.optional)
    if missing:
        problems.append(f"missing tensors required by config.json: {some(missing)}")
    mismatched = [
        f"{name} (weights {list(info.shape)}, config {list(expected.shapes[name])})"
        for name, info in sorted(tensors.items())
        if name in expected.shapes and info.shape != expected.shapes[name]
    ]
    if mismatched:
        problems.append(f"shape mismatch vs config.json: {some(mismatched)}")
    problems.extend(dtype_problems(tensors.values(), expected.dtype))
    return problems


# --------------------------------------------------------------------------- finite


def finite_problems(folder: Path, weight_files: Iterable[str]) -> list[str]:
    """NaN/Inf weights load fine and serve garbage; this needs the bytes, so local only."""
    problems: list[str] = []
    bad: list[str] = []
    for file_name in weight_files:
        try:
            with safe_open(str(folder / file_name), framework="pt") as handle:
                bad.extend(
                    name
                    for name in handle.keys()  # noqa: SIM118 (safe_open is not a Mapping)
                    if not _tensor_is_finite(handle, name)
                )
        except Exception as exc:  # safetensors raises its own error types
            problems.append(f"{file_name}: cannot read tensors ({type(exc).__name__}: {exc})")
    if bad:
        problems.append(f"non-finite values (NaN/Inf) in tensors: {some(sorted(bad))}")
    return problems


def _tensor_is_finite(handle: Any, name: str) -> bool:
    """Check one tensor in row chunks, so a huge embedding never loads whole."""
    tensor_slice = handle.get_slice(name)
    if tensor_slice.get_dtype() not in FINITE_CHECKED_DTYPES:
        return True
    shape = tensor_slice.get_shape()
    if not shape:
        return _all_finite(handle.get_tensor(name))
    rows = max(1, FINITE_CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))
    return all(
        _all_finite(tensor_slice[start : start + rows]) for start in range(0, shape[0], rows)
    )


def _all_finite(tensor: torch.Tensor) -> bool:
    """isfinite has no kernel for the 8-bit floats, so those are widened (one chunk only)."""
    if tensor.element_size() < 2:
        tensor = tensor.float()
    return bool(tensor.isfinite().all())


# --------------------------------------------------------------------------- generate


def sample_answer(folder: Path, prompt: str, problems: list[str]) -> str | None:
    """Load exactly as a server would and answer one prompt: the last word on servability.

    A failure to load or generate, or an empty answer, is appended to `problems`.
    """
    try:
        answer = generate_sample(folder, prompt)
    except Exception as exc:  # any failure to load or generate means it cannot be served
        problems.append(f"load-and-generate check failed ({type(exc).__name__}: {exc})")
        return None
    if not answer.strip():
        problems.append(f"load-and-generate check: empty answer to {prompt!r}")
    return answer


def generate_sample(folder: Path, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """Greedy, float32 on CPU, through the chat template: deterministic and GPU-free."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new_tokens, skip_special_tokens=True)
