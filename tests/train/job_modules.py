"""Import `job_image/` modules in-process, the way `finetune.py` imports its siblings.

The job image is tagged by a hash of `job_image/`'s content, so tests must not leave
`__pycache__` in it: bytecode writing is off while a module (and what it imports) loads.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

JOB_IMAGE = Path(__file__).resolve().parents[2] / "job_image"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# The GPU variants of the CPU checks (bench/gpu_check.sh runs them on a GPU machine).
NEEDS_CUDA = pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")


def job_module(name: str) -> ModuleType:
    """The job's module `name` (e.g. "config"), imported from job_image/."""
    folder = str(JOB_IMAGE)
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)
        sys.dont_write_bytecode = saved


def job_config(model: object, *extra: str) -> object:
    """The job's parsed config (config.yaml defaults + `extra` flags) for an in-process run.

    The data, output folder and lineage key are placeholders: in-process tests hand rows to
    the trainer themselves and write nowhere the job would.
    """
    required = ["--model", str(model), "--dataset", "rows.jsonl", "--output-dir", "unused"]
    return job_module("config").parse_config([*required, "--lineage-key", "test", *extra], {})


def job_trainer(cfg: Any, device: Any, chats: list[Any], scratch: Path) -> tuple[Any, Any]:
    """(trainer, base): the job's SFTTrainer for these conversations, built the job's way."""
    from datasets import Dataset

    base = job_module("modeling").resolve_model(cfg.inputs)
    trainer, _ = job_module("train").build_trainer(
        cfg, base, device, Dataset.from_list(chats), scratch
    )
    return trainer, base
