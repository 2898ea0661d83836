"""The default recipe takes enough optimizer steps on the reference workload, and the step
count it is sized by is the one the Trainer really takes.

The reference workload is the codelab's: 1000 rows, 50 held out, 950 trained on. The sample
has 400 rows of Text2Emoji's length distribution, repeated here to 950.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from job_modules import job_config, job_module, job_trainer

modeling, rows, train = (job_module(n) for n in ("modeling", "rows", "train"))
REFERENCE_TRAIN_ROWS = 950


def trainer_for(model_dir: Path, chats: list[Any], scratch: Path, *flags: str) -> Any:
    """The job's trainer for `chats`, config.yaml defaults plus `flags`, LoRA on the CPU."""
    cfg = job_config(model_dir, "--method", "lora", *flags)
    device = modeling.Device(on_cuda=False, dtype=torch.float32, method="lora")
    return job_trainer(cfg, device, chats, scratch)[0]


def sample_chats(dataset: Path, count: int) -> list[Any]:
    """`count` conversations from the sample, repeated as needed."""
    lines = dataset.read_text(encoding="utf-8").splitlines()
    chats = [rows.to_messages(json.loads(line)) for line in lines]
    return (chats * (count // len(chats) + 1))[:count]


def test_defaults_give_100_steps_and_2_checkpoints_on_the_reference_workload(
    tiny_model_dir: Path, sample_dataset_path: Path, tmp_path: Path
) -> None:
    chats = sample_chats(sample_dataset_path, REFERENCE_TRAIN_ROWS)
    trainer = trainer_for(tiny_model_dir, chats, tmp_path)
    steps = train.planned_steps(trainer)
    assert steps >= 100, steps
    assert steps // trainer.args.save_steps >= 2, (steps, trainer.args.save_steps)


def test_planned_steps_are_the_steps_trained(
    tiny_model_dir: Path, sample_dataset_path: Path
) -> None:
    chats = sample_chats(sample_dataset_path, 60)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = trainer_for(tiny_model_dir, chats, Path(scratch), "--checkpoint-steps", "0")
        planned = train.planned_steps(trainer)
        train.run_training(trainer, None)
    assert trainer.state.global_step == planned > 1
