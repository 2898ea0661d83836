"""Packed training rows: examples sharing a row must not see each other.

The trainer flattens each micro-batch padding-free into one sequence whose `position_ids`
restart at every example, and passes no attention mask; transformers derives a block-diagonal
mask from those positions for the pinned attention kernel (`modeling.ATTENTION`). If it did not,
every example after the first would attend to the ones before it and train on the wrong
context. So: take the job's own first packed batch, run it, and compare each example's logits
with the same example run alone.

Tolerance: the largest absolute logit difference, relative to the largest logit of the
example alone — 1e-5 in fp32 (measured 2.5e-7 on CPU: only summation order differs), 2e-2 in
bf16 (8 significant bits, 2^-7 ≈ 0.8 %, over two layers and differently shaped kernels;
measured 4.1e-3 in bf16 on CPU). A control run with positions that do not restart (so the
examples do attend to each other) differs by ~1.08 and must exceed 10x the tolerance, which
shows the comparison can fail.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from job_modules import NEEDS_CUDA, job_config, job_module, job_trainer

modeling, rows = (job_module(n) for n in ("modeling", "rows"))

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
DEVICES = [
    pytest.param(False, torch.float32, id="cpu-fp32"),
    pytest.param(True, torch.bfloat16, id="cuda-bf16", marks=NEEDS_CUDA),
]


def first_packed_batch(model_dir: Path, dataset: Path, device: Any) -> tuple[Any, dict]:
    """The job's trainer (defaults from config.yaml) and the first micro-batch it trains on."""
    lines = dataset.read_text(encoding="utf-8").splitlines()[:60]
    chats = [rows.to_messages(json.loads(line)) for line in lines]
    with tempfile.TemporaryDirectory() as scratch:
        trainer, _ = job_trainer(
            job_config(model_dir, "--method", "lora"), device, chats, Path(scratch)
        )
        batch = next(iter(trainer.get_train_dataloader()))
    return trainer.model.eval(), batch


def example_spans(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each example in a flat packed row: positions restart at 0."""
    starts = (position_ids == 0).nonzero().flatten().tolist()
    return list(zip(starts, [*starts[1:], len(position_ids)], strict=True))


def worst_relative_difference(model: Any, batch: dict, positions: torch.Tensor) -> float:
    """Max over examples of max|packed - alone| / max|alone| for the logits."""
    ids = batch["input_ids"].to(model.device)
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions.to(model.device)).logits[0].float()
        worst = 0.0
        for start, end in example_spans(batch["position_ids"][0]):
            alone = model(input_ids=ids[:, start:end]).logits[0].float()
            gap = (packed[start:end] - alone).abs().max() / alone.abs().max()
            worst = max(worst, float(gap))
    return worst


@pytest.mark.parametrize(("on_cuda", "dtype"), DEVICES)
def test_packed_examples_compute_exactly_what_they_compute_alone(
    tiny_model_dir: Path, sample_dataset_path: Path, on_cuda: bool, dtype: torch.dtype
) -> None:
    device = modeling.Device(on_cuda=on_cuda, dtype=dtype, method="lora")
    model, batch = first_packed_batch(tiny_model_dir, sample_dataset_path, device)
    assert model.config._attn_implementation == modeling.attention_for(device) == "sdpa"
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free
    spans = example_spans(batch["position_ids"][0])
    assert len(spans) >= 10, "a default micro-batch packs many examples"

    packed = worst_relative_difference(model, batch, batch["position_ids"])
    leaky_positions = torch.arange(batch["input_ids"].shape[1]).unsqueeze(0)
    leaky = worst_relative_difference(model, batch, leaky_positions)

    assert packed <= TOLERANCE[dtype], f"packed examples differ from alone by {packed:.2e}"
    assert leaky > 10 * TOLERANCE[dtype], "the control must show cross-example attention"
