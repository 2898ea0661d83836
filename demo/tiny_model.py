"""Build a tiny, *untuned* Gemma 3 chat model for the demo and the tests — offline, in seconds.

Why: `google/gemma-3-1b-it` cannot be downloaded on CI or demo machines (no model hub), yet the
pipeline, `make demo` and the tests need a real `Gemma3ForCausalLM` checkpoint with the real Gemma 3
chat template and a tokenizer that round-trips every emoji. So we train a byte-level BPE
tokenizer, create a tiny model from a config, fully fine-tune it for a few hundred steps, and
`save_pretrained` it like a hub checkpoint.

What it is taught mirrors what a real untuned chat model brings to the codelab: it knows what
emoji stand for (asked "Say it with emoji: …" it answers in emoji), but asked "Translate to
emoji: …" it answers in words (the sentence's topic, e.g. "travel"). Fine-tuning then has
something real to teach — answer *this* prompt in emoji — and the report shows it: the base
answers in words and scores no emoji, the tuned model answers in emoji. (LoRA on a random tiny
base barely learns anything; on this pre-trained one it learns the new answer format in a few
dozen steps.)

It is never trained on the dataset it is evaluated on: its sentences are drawn fresh from the
sample's own generator (`data/make_sample.py`, another seed) with every text of `--data` — and the
codelab's smoke sentence — excluded, so whichever rows a run holds out, the base has not seen them.

Deterministic (fixed seeds, fixed data order, deterministic torch algorithms) and idempotent:
`BUILD_INFO.json` is written last with a hash of every input; a folder with a matching one is
reused.

    python -m demo.tiny_model --out DIR --data data/text2emoji_sample.jsonl [--seed N] [--steps N]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import importlib.util
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

# Bump when the build recipe changes in a way the input hash cannot see.
BUILDER_VERSION = "3"
BUILD_INFO = "BUILD_INFO.json"
PROMPT_PREFIX = "Translate to emoji: "  # the task: the base answers it with the topic, in words
EMOJI_PROMPT_PREFIX = "Say it with emoji: "  # what the base knows: emoji for a sentence
SAMPLE_GENERATOR = Path(__file__).resolve().parent.parent / "data" / "make_sample.py"
CORPUS_SEED_OFFSET = 1_000_003  # the corpus never reuses the committed sample's own draw
ROWS_PER_TOPIC = 80
# The codelab's smoke sentence: kept out so the served answer shows generalisation, not recall.
HELD_BACK_TEXTS = ("I ate a banana for breakfast, later I'm thinking of having soup!",)
PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
# Order fixes the ids: <pad>=0, <eos>=1, <bos>=2, <unk>=3 like Gemma; turn markers follow.
SPECIAL_TOKENS = [PAD, EOS, BOS, UNK, START_OF_TURN, END_OF_TURN]
DEFAULT_STEPS = 300
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of the brief full fine-tune; part of the input hash."""

    batch_size: int = 32
    learning_rate: float = 4e-3
    warmup_steps: int = 20
    final_lr_fraction: float = 0.1


@dataclass(frozen=True)
class ModelShape:
    """Size of the tiny Gemma 3: small enough to train on 2 CPU cores in seconds."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 1
    head_dim: int = 32
    max_position_embeddings: int = 512
    sliding_window: int = 64


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def gemma3_chat_template() -> str:
    """The real Gemma 3 chat template as bundled with trl.

    Using trl's exact text matters: trl's `get_training_chat_template` recognises it byte-for-byte
    and swaps in its `{% generation %}` variant for `assistant_only_loss=True`.
    """
    path = importlib.resources.files("trl") / "chat_templates" / "gemma3.jinja"
    return path.read_text(encoding="utf-8")


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it like Gemma's tokenizer.

    Byte-level (full 256-byte initial alphabet) so any emoji — ZWJ sequences, flags, skin tones,
    variation selectors — encodes and decodes exactly, even ones never seen in training.
    Turn markers are special tokens so each is a single id, as in Gemma. A BOS post-processor
    mirrors Gemma (`add_bos_token=True`); the chat template writes its own `<bos>` and
    `apply_chat_template` encodes without special tokens, so chat prompts get exactly one.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[START_OF_TURN, END_OF_TURN],
        add_bos_token=True,
        add_eos_token=False,
        # Right padding for training batches; batched generation should switch to "left".
        padding_side="right",
        chat_template=gemma3_chat_template(),
        model_max_length=ModelShape.max_position_embeddings,
    )
    return tokenizer


def tokenizer_corpus(rows: Sequence[dict[str, str]]) -> Iterator[str]:
    """Texts the BPE is trained on: user turns, model turns (emoji, topics) and the prompts.

    The turn headers are included once per row so "user"/"model" and the prompt prefixes get
    merged into few tokens, keeping training sequences short.
    """
    for row in rows:
        yield f"user\n{PROMPT_PREFIX}{row['text']}"
        yield f"user\n{EMOJI_PROMPT_PREFIX}{row['text']}"
        yield f"model\n{row['emoji']}"
        if "topic" in row:
            yield f"model\n{row['topic']}"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def sample_generator() -> ModuleType:
    """`data/make_sample.py`, loaded by path (data/ is a folder of files, not a package)."""
    spec = importlib.util.spec_from_file_location("make_sample", SAMPLE_GENERATOR)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{SAMPLE_GENERATOR}: the sample generator is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pretraining_rows(avoid: Iterable[str], seed: int, per_topic: int) -> list[dict[str, str]]:
    """Fresh Text2Emoji-style rows (text, emoji, topic), none of whose texts is in `avoid`.

    Drawn by the sample's own generator so they read like the dataset, with another seed and
    `avoid` (every text of the dataset) pre-marked as taken: the base model is never trained
    on a row any run could hold out for evaluation.
    """
    generator = sample_generator()
    rng = random.Random(CORPUS_SEED_OFFSET + seed)
    seen = {*avoid, *HELD_BACK_TEXTS}
    return [
        dict(row)
        for topic in generator.TEMPLATES
        for row in generator.topic_rows(topic, rng, seen, per_topic)
    ]


def pretraining_examples(
    tokenizer: PreTrainedTokenizerFast, rows: Sequence[dict[str, str]]
) -> list[tuple[list[int], list[int]]]:
    """Every row asked in emoji (answered in emoji), every other row asked the task (its topic).

    Asking the task on only half the rows keeps the word habit from being so entrenched that a
    short LoRA run cannot move it: measured on the demo's 17 steps, the tuned model's emoji-only
    rate was 0.92 this way against 0.62 with the task asked on every row.
    """
    examples = []
    for index, row in enumerate(rows):
        if index % 2 == 0:
            examples.append(encode_example(tokenizer, PROMPT_PREFIX + row["text"], row["topic"]))
        examples.append(encode_example(tokenizer, EMOJI_PROMPT_PREFIX + row["text"], row["emoji"]))
    return examples


def load_rows(dataset_path: Path) -> list[dict[str, str]]:
    """Read Text2Emoji-shaped JSON lines (`text`, `emoji`, ...) in file order."""
    rows: list[dict[str, str]] = []
    with dataset_path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    if not rows:
        raise ValueError(f"{dataset_path}: no rows")
    return rows


def encode_example(
    tokenizer: PreTrainedTokenizerFast, question: str, answer: str
) -> tuple[list[int], list[int]]:
    """Token ids and labels for one chat example; loss only on the answer.

    The answer span is what trl's Gemma 3 training template marks as generation: the answer plus
    `<end_of_turn>\\n`, so the model learns to stop.
    """
    user = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*user, {"role": "assistant", "content": answer}], tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError("chat template is not prefix-preserving")
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    answer_ids = tokenizer.encode(full[len(prompt) :], add_special_tokens=False)
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def collate(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example (pad labels are ignored)."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def batches(
    examples: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
    steps: int,
    generator: torch.Generator,
) -> Iterator[list[tuple[list[int], list[int]]]]:
    """`steps` batches from seeded epoch-wise permutations: a fixed data order per seed.

    Plain random batches on purpose: length-bucketed ones were ~30% faster but halved the
    exact-match rate on unseen sentences.
    """
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(len(examples), generator=generator).tolist()
        chosen, order = order[:batch_size], order[batch_size:]
        yield [examples[i] for i in chosen]


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def model_config(tokenizer: PreTrainedTokenizerFast, shape: ModelShape) -> Gemma3TextConfig:
    """A Gemma 3 text config shrunk to `shape`, with the tokenizer's special ids."""
    eos_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    return Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        query_pre_attn_scalar=shape.head_dim,
        max_position_embeddings=shape.max_position_embeddings,
        sliding_window=shape.sliding_window,
        # Gemma 3 interleaves local (sliding) and global layers; keep one of each. The legacy
        # int pattern is saved too (default 6) and must agree for runtimes that still read it.
        layer_types=["sliding_attention", "full_attention"][: shape.num_hidden_layers],
        sliding_window_pattern=2,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        dtype="float32",
    )


def generation_config(config: Gemma3TextConfig) -> GenerationConfig:
    """Greedy decoding that stops at `<eos>` or `<end_of_turn>`, like gemma-3-1b-it's.

    `max_new_tokens` is set so servers that fall back to the generation config do not cut
    answers at transformers' default `max_length=20` (which counts the prompt).
    """
    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
        max_new_tokens=32,
    )


def learning_rate(step: int, total: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to `final_lr_fraction` of the peak."""
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
    floor = settings.final_lr_fraction
    return settings.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(
    model: Gemma3ForCausalLM,
    examples: Sequence[tuple[list[int], list[int]]],
    *,
    steps: int,
    seed: int,
    pad_id: int,
    settings: TrainSettings,
) -> float:
    """Full fine-tune with a plain AdamW loop (no Trainer: faster to start, easy to keep exact).

    Returns the last batch's loss, for logging.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(float("nan"))
    for step, batch in enumerate(batches(examples, settings.batch_size, steps, generator)):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, settings)
        loss = model(**collate(batch, pad_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return float(loss.detach())


@contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """Seed, force deterministic kernels and pin one thread, restoring the caller's state after.

    One thread makes the float reductions — hence the weights — independent of the machine's
    core count, and is also the fastest choice here: the matmuls are tiny, and on a busy 2-core
    box multi-threaded torch slows down several-fold from oversubscription.
    """
    previous_det, previous_threads = (
        torch.are_deterministic_algorithms_enabled(),
        torch.get_num_threads(),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous_threads)
            torch.use_deterministic_algorithms(previous_det)


# ---------------------------------------------------------------------------------------------
# Build orchestration
# ---------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_inputs(dataset_path: Path, seed: int, steps: int) -> dict[str, Any]:
    """Everything that determines the output; its hash decides whether a build can be reused."""
    return {
        "builder_version": BUILDER_VERSION,
        "dataset_sha256": sha256_file(dataset_path),
        "generator_sha256": sha256_file(SAMPLE_GENERATOR),
        "rows_per_topic": ROWS_PER_TOPIC,
        "seed": seed,
        "steps": steps,
        "shape": asdict(ModelShape()),
        "train": asdict(TrainSettings()),
    }


def inputs_hash(inputs: dict[str, Any]) -> str:
    """Stable hash of the build inputs (sorted-key JSON)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def is_complete(output_dir: Path, expected_hash: str) -> bool:
    """True when `BUILD_INFO.json` matches the inputs and every file it lists is intact."""
    info_path = output_dir / BUILD_INFO
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("inputs_hash") != expected_hash:
        return False
    files: dict[str, str] = info.get("files", {})
    return bool(files) and all(
        (output_dir / name).is_file() and sha256_file(output_dir / name) == digest
        for name, digest in files.items()
    )


def write_build_info(output_dir: Path, inputs: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write BUILD_INFO.json last and atomically: its presence marks a complete build."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(output_dir.iterdir())
        if p.is_file() and p.name != BUILD_INFO
    }
    info = {"inputs_hash": inputs_hash(inputs), "inputs": inputs, "files": files, **extra}
    tmp = output_dir / f".{BUILD_INFO}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, output_dir / BUILD_INFO)


def train_and_save(output_dir: Path, rows: list[dict[str, str]], seed: int, steps: int) -> float:
    """Tokenizer → tiny model → brief full fine-tune → save_pretrained; returns the final loss.

    `rows` are the pre-training rows (never the dataset's): see `pretraining_rows`.
    """
    shape, settings = ModelShape(), TrainSettings()
    tokenizer = build_tokenizer(tokenizer_corpus(rows), vocab_size=shape.vocab_size)
    examples = pretraining_examples(tokenizer, rows)
    longest = max(len(ids) for ids, _ in examples)
    if longest > shape.max_position_embeddings:
        raise ValueError(f"an example has {longest} tokens > {shape.max_position_embeddings}")
    with deterministic_torch(seed):
        config = model_config(tokenizer, shape)
        model = Gemma3ForCausalLM(config)
        model.generation_config = generation_config(config)
        loss = pretrain(
            model,
            examples,
            steps=steps,
            seed=seed,
            pad_id=tokenizer.pad_token_id,
            settings=settings,
        )
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    template = output_dir / "chat_template.jinja"
    if not template.is_file():  # older/newer transformers may embed it in tokenizer_config.json
        template.write_text(gemma3_chat_template(), encoding="utf-8")
    return loss


def build_tiny_model(
    output_dir: Path,
    dataset_path: Path,
    *,
    seed: int = 0,
    pretrain_steps: int = DEFAULT_STEPS,
) -> Path:
    """Build tokenizer + tiny Gemma3ForCausalLM, briefly fully fine-tune it, save it; return dir.

    The saved folder looks like a hub checkpoint (config.json, generation_config.json,
    model.safetensors, tokenizer.json, tokenizer_config.json, chat_template.jinja) and answers
    "Translate to emoji: …" with a topic word and "Say it with emoji: …" in emoji; no text of
    `dataset_path` is trained on. Idempotent: a folder whose BUILD_INFO.json matches the inputs
    (dataset and generator sha256, seed, steps, builder version, shapes) is returned untouched.
    """
    output_dir, dataset_path = Path(output_dir), Path(dataset_path)
    inputs = build_inputs(dataset_path, seed, pretrain_steps)
    if is_complete(output_dir, inputs_hash(inputs)):
        return output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / BUILD_INFO).unlink(missing_ok=True)  # mark incomplete while we write
    avoid = [row["text"] for row in load_rows(dataset_path)]
    rows = pretraining_rows(avoid, seed, ROWS_PER_TOPIC)
    loss = train_and_save(output_dir, rows, seed, pretrain_steps)
    # Only deterministic facts go in, so two builds of the same inputs are byte-identical.
    write_build_info(output_dir, inputs, {"final_loss": round(loss, 4)})
    return output_dir


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m demo.tiny_model --out DIR --data FILE [--seed N] [--steps N]`."""
    parser = argparse.ArgumentParser(prog="python -m demo.tiny_model", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--data", type=Path, required=True, help="the Text2Emoji-shaped .jsonl to never train on"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="pre-training steps")
    args = parser.parse_args(argv)
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    out = build_tiny_model(args.out, args.data, seed=args.seed, pretrain_steps=args.steps)
    print(f"tiny model ready in {out} ({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
