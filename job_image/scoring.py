"""Score a model on the held-out rows: answer loss and greedy answers judged as emoji.

The same function scores the base model (before training) and the merged model (the bytes
that will be served), so the pipeline's gate compares like with like. The loss covers the
tokens training scores (the answer and its end-of-turn), averaged per token over all rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import emoji_metrics
from config import EvalArguments
from joblog import finite_or_none, log, progress

IGNORE_INDEX = -100
SAMPLES_LOGGED = 3


@dataclass(frozen=True)
class Example:
    """One held-out chat, tokenized the way training sees it."""

    question: str
    reference: str
    prompt: list[int]  # the user turn and the model-turn header: what generation starts from
    full: list[int]  # prompt + answer + end of turn, truncated like training rows


def encode(tokenizer: Any, rows: Any, max_length: int) -> list[Example]:
    """Tokenize the held-out conversations once; both models are scored on the same ids."""
    examples = []
    for row in rows:
        messages = row["messages"]
        prompt = tokenizer.apply_chat_template(
            messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
        examples.append(
            Example(
                question=messages[0]["content"],
                reference=messages[1]["content"],
                prompt=list(prompt),
                full=list(full["input_ids"])[:max_length],
            )
        )
    return examples


def evaluate(
    model: Any, tokenizer: Any, examples: Sequence[Example], settings: EvalArguments, phase: str
) -> dict[str, Any]:
    """eval_loss, emoji_only_rate, exact_match, emoji_f1 and eval_examples for one model."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = [
        examples[start : start + settings.eval_batch_size]
        for start in range(0, len(examples), settings.eval_batch_size)
    ]
    loss_sum, loss_tokens, answers = 0.0, 0, []
    for index, batch in enumerate(batches, start=1):
        with torch.no_grad():
            batch_sum, batch_tokens = answer_loss(model, batch, pad_id)
            answers += greedy_answers(model, tokenizer, batch, settings, pad_id)
        loss_sum, loss_tokens = loss_sum + batch_sum, loss_tokens + batch_tokens
        progress(phase, index, len(batches))
    references = [example.reference for example in examples]
    for example, answer in list(zip(examples, answers, strict=True))[:SAMPLES_LOGGED]:
        log(f"{phase} sample: {example.question!r} -> {answer!r} (reference {example.reference!r})")
    return {
        "eval_loss": finite_or_none(loss_sum / loss_tokens) if loss_tokens else None,
        "emoji_only_rate": emoji_metrics.emoji_only_rate(answers),
        "exact_match": emoji_metrics.exact_match_rate(answers, references),
        "emoji_f1": emoji_metrics.mean_emoji_f1(answers, references),
        "eval_examples": len(answers),
    }


def answer_loss(model: Any, batch: Sequence[Example], pad_id: int) -> tuple[float, int]:
    """(summed loss, token count) over the answer tokens of a right-padded batch."""
    import torch

    width = max(len(example.full) for example in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        ids[row, : len(example.full)] = torch.tensor(example.full)
        mask[row, : len(example.full)] = 1
        if example.full[: len(example.prompt)] == example.prompt:  # else: truncated away
            start = len(example.prompt)
            labels[row, start : len(example.full)] = ids[row, start : len(example.full)]
    tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
    if tokens == 0:
        return 0.0, 0
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    output = model(**{name: tensor.to(model.device) for name, tensor in inputs.items()})
    return float(output.loss) * tokens, tokens  # the model's loss is the mean over those tokens


def greedy_answers(
    model: Any, tokenizer: Any, batch: Sequence[Example], settings: EvalArguments, pad_id: int
) -> list[str]:
    """Greedy answers to a left-padded batch of prompts, special tokens and whitespace removed."""
    import torch
    from transformers import GenerationConfig

    width = max(len(example.prompt) for example in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        ids[row, width - len(example.prompt) :] = torch.tensor(example.prompt)
        mask[row, width - len(example.prompt) :] = 1
    greedy = GenerationConfig(
        max_new_tokens=settings.eval_max_new_tokens,
        do_sample=False,
        eos_token_id=model.generation_config.eos_token_id,
        pad_token_id=pad_id,
    )
    output = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        generation_config=greedy,
    )
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output]
