"""Train the LoRA adapter with trl's SFTTrainer, checkpointing and resuming as configured.

The recipe (all of it from config.yaml unless overridden):

- the frozen base in bf16 on a GPU, fp32 on a CPU (LoRA); in 4-bit NF4 with `--method qlora`;
- LoRA of rank r on every attention and MLP projection, scale alpha / r;
- loss on the assistant turn only: trl swaps in Gemma 3's training chat template with
  `{% generation %}` markers, so the prompt is masked and `<end_of_turn>` is learned;
- packing: examples are placed into rows of `max_length` tokens by best-fit decreasing, and
  the batch is flattened padding-free; `position_ids` restart at each example, which the
  pinned SDPA attention (modeling.ATTENTION) turns into a block-diagonal mask, so examples never
  attend to each other (tests/train/test_packing.py);
- AdamW, linear warmup over `warmup_ratio` of the steps, then cosine decay to 0;
- one seed for sampling, LoRA init, data order and dropout.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import checkpoints
from config import JobConfig, LoraArguments
from joblog import finite_or_none, log, progress
from modeling import BaseModel, Device, free_memory, load_for_training

CHECKPOINTS_KEPT = 2  # the newest may be cut short by a crash; the one before is then used


@dataclass(frozen=True)
class TrainResult:
    """What the training phase reports into the manifest."""

    train_loss: float | None
    loss_mode: str
    train_examples: int
    train_tokens: int
    steps: int
    resumed_from_step: int
    runtime_s: float


def choose_loss_mode(tokenizer: Any, loss_on: str) -> str:
    """`sequence`, or the answer-only mode trl can apply to this chat template.

    Assistant-only loss needs `{% generation %}` markers; trl swaps in a marked copy of the
    templates it knows byte-for-byte (Gemma 3's among them) and raises for others. Masking the
    prompt of prompt/completion rows trains the same tokens (the answer + `<end_of_turn>`).
    """
    from trl.chat_template_utils import get_training_chat_template

    if loss_on == "sequence":
        return "sequence"
    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return "completion_only"
    return "assistant_only"


def sft_config(cfg: JobConfig, work_dir: Path, device: Device, loss_mode: str) -> Any:
    """trl's SFTConfig for this job; checkpoints (if enabled) go to `work_dir`."""
    import torch
    from trl import SFTConfig

    train = cfg.train
    return SFTConfig(
        output_dir=str(work_dir),
        seed=cfg.inputs.seed,
        data_seed=cfg.inputs.seed,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a fraction of the steps
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        max_length=train.max_length,
        packing=train.packing,
        assistant_only_loss=loss_mode == "assistant_only",
        completion_only_loss=loss_mode == "completion_only",
        logging_steps=train.logging_steps,
        bf16=device.dtype == torch.bfloat16,
        fp16=device.dtype == torch.float16,
        use_cpu=not device.on_cuda,
        activation_checkpointing=False,
        dataloader_pin_memory=device.on_cuda,
        save_strategy="steps" if train.checkpoint_steps else "no",
        save_steps=train.checkpoint_steps or 1,
        save_total_limit=CHECKPOINTS_KEPT,
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )


def lora_config(lora: LoraArguments) -> Any:
    """The adapter: rank, scale, dropout and target modules."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=lora.modules(),
        bias="none",
        task_type="CAUSAL_LM",
    )


def make_trainer(
    cfg: JobConfig,
    model: Any,
    tokenizer: Any,
    train_rows: Any,
    args: Any,
    loss_mode: str,
    callbacks: Sequence[Any] = (),
) -> Any:
    """An SFTTrainer over `train_rows` (conversational) for `model` with a fresh adapter."""
    from trl import SFTTrainer

    if loss_mode == "completion_only":
        train_rows = train_rows.map(as_prompt_completion, remove_columns=["messages"])
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora),
        callbacks=list(callbacks),
    )


def as_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """Split a two-turn chat into trl's conversational prompt/completion form."""
    return {"prompt": row["messages"][:1], "completion": row["messages"][1:]}


def real_tokens(trainer: Any) -> int:
    """Tokens the trainer feeds per epoch, padding excluded (packed rows hold no padding)."""
    return sum(len(ids) for ids in trainer.train_dataset["input_ids"])


def planned_steps(trainer: Any) -> int:
    """The optimizer steps `trainer.train()` will take, by the Trainer's own arithmetic."""
    dataloader = trainer.get_train_dataloader()
    return int(trainer.set_initial_training_values(trainer.args, dataloader)[-1])


def run_training(trainer: Any, resume: Path | None) -> Any:
    """`trainer.train()` with the long-lived objects frozen out of the garbage collector.

    Everything alive now (libraries, data, model) lives for the whole run; freezing it keeps
    each collection — accelerate forces a full one at start — from rescanning millions of
    objects (~0.3 s each on 2 CPU cores).
    """
    gc.freeze()
    try:
        return trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        gc.unfreeze()


def build_trainer(
    cfg: JobConfig,
    base: BaseModel,
    device: Device,
    train_rows: Any,
    work_dir: Path,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, str]:
    """(trainer, loss mode): the base loaded for training, a fresh adapter, the job's options."""
    loss_mode = choose_loss_mode(base.tokenizer, cfg.train.loss_on)
    model = load_for_training(base.path, device)
    log(f"training: 4-bit={getattr(model, 'is_loaded_in_4bit', False)} loss={loss_mode}")
    args = sft_config(cfg, work_dir, device, loss_mode)
    trainer = make_trainer(cfg, model, base.tokenizer, train_rows, args, loss_mode, callbacks)
    return trainer, loss_mode


def train_adapter(
    cfg: JobConfig,
    base: BaseModel,
    device: Device,
    train_rows: Any,
    work_dir: Path,
    adapter_dir: Path,
) -> TrainResult:
    """Train (or finish training) the adapter and save it to `adapter_dir`."""
    progress_callback = make_progress_callback()
    trainer, loss_mode = build_trainer(
        cfg, base, device, train_rows, work_dir, [progress_callback, make_checkpoint_seal()]
    )
    resume = checkpoints.last_complete(work_dir, log) if cfg.train.checkpoint_steps else None
    resumed_from = checkpoint_step(resume)
    if resume is not None:
        log(f"resuming from {resume.name} (step {resumed_from})")
    started = time.monotonic()
    output = run_training(trainer, resume)
    runtime = time.monotonic() - started
    trainer.model.save_pretrained(adapter_dir)
    loss = progress_callback.last_loss
    result = TrainResult(
        train_loss=finite_or_none(output.training_loss if loss is None else loss),
        loss_mode=loss_mode,
        train_examples=len(train_rows),
        train_tokens=real_tokens(trainer),
        steps=trainer.state.global_step,
        resumed_from_step=resumed_from,
        runtime_s=round(runtime, 3),
    )
    del trainer
    free_memory()
    return result


def checkpoint_step(checkpoint: Path | None) -> int:
    """The optimizer step a `checkpoint-<step>` folder was saved at (0 for none)."""
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint is not None else 0


def make_progress_callback() -> Any:
    """A TrainerCallback that turns trainer logs into `PROGRESS` train lines."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Remembers the last logged loss (the manifest's train_loss) and reports each log."""

        last_loss: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])
                progress("train", state.global_step, state.max_steps, loss=self.last_loss)

    return ProgressCallback()


def make_checkpoint_seal() -> Any:
    """A TrainerCallback that seals each checkpoint after the trainer has written all of it."""
    from transformers import TrainerCallback

    class CheckpointSeal(TrainerCallback):
        """`on_save` runs after the checkpoint's weights, optimizer, RNG and state are saved."""

        def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            checkpoints.mark_complete(folder)
            log(f"checkpoint {folder.name} saved")

    return CheckpointSeal()
