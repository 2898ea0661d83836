"""The lineage key is stable for the same inputs and changes with every input."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.contracts import ImageRef
from core.hashing import sha256_tree
from core.lineage import Lineage
from flows.settings import load_settings
from flows.training_job import make_lineage, train_job_spec

BASE = Lineage(
    base_model="google/gemma-3-1b-it",
    base_model_revision="abc123",
    dataset="KomeijiForce/Text2Emoji",
    dataset_revision="def456",
    sample_size=1000,
    eval_size=50,
    seed=42,
    training={"lora_r": 16, "learning_rate": 2e-4, "target_modules": ["q_proj", "v_proj"]},
    code_digest="sha256:0123",
)


def test_key_is_stable_and_short() -> None:
    again = Lineage(**BASE.as_dict())
    assert again.key == BASE.key
    assert len(BASE.key) == 16
    assert BASE.model_prefix == f"models/{BASE.key}"
    # Pinned: changing how the key is computed orphans every stored model version.
    assert BASE.key == "11f39ce6814bdafa"


def test_key_ignores_dict_order() -> None:
    reordered = replace(BASE, training=dict(reversed(list(BASE.training.items()))))
    assert reordered.key == BASE.key


@pytest.mark.parametrize(
    "change",
    [
        {"base_model": "google/gemma-3-4b-it"},
        {"base_model_revision": "abc124"},
        {"dataset_revision": "def457"},
        {"sample_size": 999},
        {"eval_size": 49},
        {"seed": 43},
        {"code_digest": "sha256:0124"},
        {"training": {**BASE.training, "learning_rate": 1e-4}},
    ],
)
def test_every_input_changes_the_key(change: dict[str, object]) -> None:
    assert replace(BASE, **change).key != BASE.key


def test_code_digest_follows_content_not_location(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        (folder / "sub").mkdir(parents=True)
        (folder / "finetune.py").write_text("print('hi')\n")
        (folder / "sub" / "config.yaml").write_text("r: 8\n")
    (second / "__pycache__").mkdir()
    (second / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert sha256_tree(first) == sha256_tree(second)
    (second / "sub" / "config.yaml").write_text("r: 16\n")
    assert sha256_tree(first) != sha256_tree(second)


def test_job_spec_carries_settings_and_lineage() -> None:
    settings = load_settings(training={"lora_r": 4, "max_steps": 7}, data={"seed": 3})
    image = ImageRef(uri="local", content_hash="sha256:feed")
    lineage = make_lineage(settings, image, "rev-model", "rev-data")
    assert lineage.training["method"] == "lora"  # `auto` resolved on a CPU machine
    spec = train_job_spec(settings, lineage)
    args = list(spec.args)
    assert args[args.index("--lora-r") + 1] == "4"
    assert args[args.index("--max-steps") + 1] == "7"
    assert args[args.index("--lineage-key") + 1] == lineage.key
    assert args[args.index("--model-revision") + 1] == "rev-model"
    assert spec.output_prefix == f"models/{lineage.key}"
    assert spec.deadline_s == settings.training.timeout_s
    assert "timeout_s" not in lineage.training  # a deadline does not change the weights
