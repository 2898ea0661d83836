"""Tests of `demo.tiny_model`: the offline stand-in for gemma-3-1b-it that other tests train on.

Why they matter: every training/serving test trusts this checkpoint to look like the real one
(Gemma 3 chat format, single-token turn markers, exact emoji round-trips, eos on <end_of_turn>),
to be *untuned* (it answers the task in words, so fine-tuning has something to show) without
ever having seen the dataset, and to be reproducible, so a cached build can be reused and
results do not drift between runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import emoji
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from demo.tiny_model import (
    BUILD_INFO,
    EMOJI_PROMPT_PREFIX,
    PROMPT_PREFIX,
    ROWS_PER_TOPIC,
    build_tiny_model,
    build_tokenizer,
    gemma3_chat_template,
    load_rows,
    pretraining_rows,
    tokenizer_corpus,
)

SMOKE_TEXT = "I ate a banana for breakfast, later I'm thinking of having soup!"
TOPICS = {"food", "travel", "sports", "weather", "music", "work", "animals", "feelings",
          "holidays", "tech"}  # fmt: skip
SAVED_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    BUILD_INFO,
}
# ZWJ sequences, a flag, a subdivision tag sequence, skin tones, VS16 — plus plain text.
TRICKY = ["👨‍🍳", "🏳️‍🌈", "🇯🇵🇫🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👍🏽", "🧑🏿‍🚀", "❤️", "☀️🌧️", "🍌🤔😋🥣", "café → 🐈‍⬛!"]
QUICK_STEPS = 8  # enough to exercise the training loop in the determinism checks


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> PreTrainedTokenizerBase:
    """The saved tokenizer, loaded the way the trainer and servers load it."""
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("text", TRICKY)
def test_saved_tokenizer_round_trips_emoji(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids


def test_fresh_tokenizer_round_trips_unseen_emoji(sample_dataset_path: Path) -> None:
    tok = build_tokenizer(["just words here"], vocab_size=300)
    for text in TRICKY:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    full = build_tokenizer(tokenizer_corpus(load_rows(sample_dataset_path)))
    assert len(full) == 1024


def test_special_token_ids_match_gemma(tokenizer: PreTrainedTokenizerBase) -> None:
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 1, 2)
    assert tokenizer.unk_token_id == 3
    for marker in ("<start_of_turn>", "<end_of_turn>"):
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1
    assert tokenizer.padding_side == "right"


def test_chat_template_is_gemma3(tokenizer: PreTrainedTokenizerBase, tiny_model_dir: Path) -> None:
    assert tokenizer.chat_template == gemma3_chat_template()
    assert (tiny_model_dir / "chat_template.jinja").read_text(encoding="utf-8") == (
        gemma3_chat_template()
    )
    messages = [{"role": "user", "content": "Translate to emoji: hi"}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == (
        "<bos><start_of_turn>user\nTranslate to emoji: hi<end_of_turn>\n<start_of_turn>model\n"
    )
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id  # one <bos>


def test_saved_folder_is_a_complete_checkpoint(tiny_model_dir: Path) -> None:
    assert {p.name for p in tiny_model_dir.iterdir()} >= SAVED_FILES
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "gemma3_text"
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 5]  # <eos>, <end_of_turn>
    assert generation["pad_token_id"] == 0


def _answer(model_dir: Path, tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """Greedy answer, which must end at <end_of_turn> like a chat model's."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt"
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1] :].tolist()
    answer = tokenizer.decode(new, skip_special_tokens=True)
    assert new[-1] == tokenizer.convert_tokens_to_ids("<end_of_turn>"), answer
    return answer


def test_untuned_base_answers_the_task_in_words_but_knows_emoji(
    tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    in_words = _answer(tiny_model_dir, tokenizer, PROMPT_PREFIX + SMOKE_TEXT)
    assert in_words in TOPICS and emoji.emoji_count(in_words) == 0, in_words
    in_emoji = _answer(tiny_model_dir, tokenizer, EMOJI_PROMPT_PREFIX + SMOKE_TEXT)
    assert emoji.emoji_count(in_emoji) > 0, in_emoji


def test_base_is_never_trained_on_a_dataset_row(sample_dataset_path: Path) -> None:
    dataset = [row["text"] for row in load_rows(sample_dataset_path)]
    rows = pretraining_rows(dataset, seed=0, per_topic=ROWS_PER_TOPIC)
    texts = {row["text"] for row in rows}
    assert len(texts) == len(rows) == ROWS_PER_TOPIC * len(TOPICS)
    assert {row["topic"] for row in rows} == TOPICS
    assert not texts & {*dataset, SMOKE_TEXT}  # whatever a run holds out, the base never saw it


def test_second_build_is_a_no_op(tiny_model_dir: Path, sample_dataset_path: Path) -> None:
    before = _hashes(tiny_model_dir)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tiny_model_dir.iterdir()}
    assert build_tiny_model(tiny_model_dir, sample_dataset_path) == tiny_model_dir
    assert _hashes(tiny_model_dir) == before
    assert {p.name: p.stat().st_mtime_ns for p in tiny_model_dir.iterdir()} == mtimes


def test_builds_are_bitwise_deterministic(tmp_path: Path, sample_dataset_path: Path) -> None:
    first = build_tiny_model(tmp_path / "a", sample_dataset_path, pretrain_steps=QUICK_STEPS)
    second = build_tiny_model(tmp_path / "b", sample_dataset_path, pretrain_steps=QUICK_STEPS)
    assert _hashes(first) == _hashes(second)
    other_seed = build_tiny_model(
        tmp_path / "c", sample_dataset_path, seed=1, pretrain_steps=QUICK_STEPS
    )
    assert _hashes(other_seed)["model.safetensors"] != _hashes(first)["model.safetensors"]


def test_incomplete_or_stale_folder_is_rebuilt(tmp_path: Path, sample_dataset_path: Path) -> None:
    out = build_tiny_model(tmp_path / "m", sample_dataset_path, pretrain_steps=QUICK_STEPS)
    expected = _hashes(out)
    (out / "model.safetensors").write_bytes(b"truncated")  # a crash mid-write leaves this
    build_tiny_model(out, sample_dataset_path, pretrain_steps=QUICK_STEPS)
    assert _hashes(out) == expected
    build_tiny_model(out, sample_dataset_path, pretrain_steps=QUICK_STEPS + 1)  # new inputs
    info = json.loads((out / BUILD_INFO).read_text())
    assert info["inputs"]["steps"] == QUICK_STEPS + 1
