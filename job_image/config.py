"""The job's configuration: typed dataclasses parsed the TRL way, from YAML, env and CLI.

Why this shape: one declaration per option (type, help, validation) serves every caller — the
local pipeline passes CLI flags, the Cloud Run job passes `FT_<OPTION>` environment variables,
an operator edits YAML — and `--help` is generated from it. trl's `TrlParser` (an
`HfArgumentParser`) turns each field into `--lora-r` / `--lora_r` with its type and help text.

Sources, lowest precedence first (each one only overrides what it names):

1. `config.yaml` next to this file: every default lives there and nowhere else, so the image's
   content hash (its tag, and part of the lineage key) changes with any default;
2. `--config FILE` (or `FT_CONFIG`): a YAML mapping overriding some of those defaults;
3. `FT_<OPTION>` environment variables, e.g. `FT_LORA_R=8` (empty means unset);
4. CLI flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin, get_type_hints

DEFAULT_CONFIG = Path(__file__).resolve().with_name("config.yaml")
CONFIG_FLAG = "--config"
CONFIG_ENV = "FT_CONFIG"
ENV_PREFIX = "FT_"


class InputError(Exception):
    """The caller asked for something impossible; retrying the same request cannot help."""


def _opt(text: str) -> Any:
    """A field without a dataclass default: its default comes from config.yaml (or is required)."""
    return field(metadata={"help": text})


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _check_choices(group: object) -> None:
    """argparse checks choices on flags only; values from YAML and env are checked here."""
    for name, hint in get_type_hints(type(group)).items():
        allowed = get_args(hint) if get_origin(hint) is Literal else None
        value = getattr(group, name)
        if allowed and value not in allowed:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass
class InputArguments:
    """What to train on: the base model, the data and how it is sampled."""

    model: str = _opt("base model: hub id or local directory (required)")
    model_revision: str | None = _opt(
        "hub revision (commit sha, branch or tag) of the base model; the manifest records the "
        "commit it resolved to (a content hash for a local directory)"
    )
    dataset: str = _opt("hub dataset id, or a local .jsonl/.csv with text and emoji (required)")
    dataset_revision: str | None = _opt("hub revision of the dataset (recorded like the model's)")
    sample_size: int = _opt("rows drawn at random (seeded); must not exceed the usable rows")
    eval_size: int = _opt("rows of the sample held out for evaluation (never trained on)")
    seed: int = _opt("seed for sampling, LoRA init, data order and dropout")

    def __post_init__(self) -> None:
        _require(bool(self.model), "--model is required (or set FT_MODEL)")
        _require(bool(self.dataset), "--dataset is required (or set FT_DATASET)")
        _require(min(self.sample_size, self.eval_size) >= 1, "--sample-size and --eval-size >= 1")
        _require(
            self.eval_size < self.sample_size,
            "--eval-size must be smaller than --sample-size (training needs rows)",
        )


@dataclass
class LoraArguments:
    """The adapter: method and LoRA shape."""

    method: Literal["auto", "lora", "qlora"] = _opt(
        "auto = lora (bf16 base on a GPU, fp32 on a CPU); qlora = 4-bit NF4 base with "
        "bf16 compute, for models whose bf16 weights do not fit"
    )
    lora_r: int = _opt("LoRA rank")
    lora_alpha: int = _opt("LoRA alpha (scale = alpha / r)")
    lora_dropout: float = _opt("dropout on the LoRA input")
    target_modules: str = _opt("comma-separated module names that get adapters")

    def __post_init__(self) -> None:
        _check_choices(self)
        _require(self.lora_r >= 1 and self.lora_alpha >= 1, "--lora-r and --lora-alpha >= 1")
        _require(0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)")
        _require(bool(self.modules()), "--target-modules is empty; e.g. q_proj,v_proj")

    def modules(self) -> list[str]:
        """The target module names as a list."""
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]


@dataclass
class TrainArguments:
    """The optimisation: schedule, batch geometry, packing, loss and checkpoints."""

    epochs: float = _opt("passes over the training rows (ignored when --max-steps > 0)")
    max_steps: int = _opt("optimizer steps; -1 = run --epochs")
    learning_rate: float = _opt("peak learning rate")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = _opt(
        "learning-rate schedule after the linear warmup"
    )
    warmup_ratio: float = _opt("fraction of the optimizer steps spent warming up linearly")
    batch_size: int = _opt(
        "micro-batch per device: packed rows of --max-length tokens with --packing, else examples"
    )
    grad_accum: int = _opt("micro-batches accumulated per optimizer step")
    max_length: int = _opt("max tokens per example, and per packed row with --packing")
    packing: bool = _opt("pack examples into rows (best-fit decreasing), padding-free")
    loss_on: Literal["answer", "sequence"] = _opt(
        "answer = loss on the assistant turn only; sequence = on every token (the codelab's)"
    )
    logging_steps: int = _opt("emit a train PROGRESS line every N optimizer steps")
    checkpoint_steps: int = _opt(
        "save a resumable adapter checkpoint every N optimizer steps next to --output-dir "
        "(<output-dir>.checkpoints/); 0 = never"
    )

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "--learning-rate must be > 0")
        _require(self.max_steps >= 1 or self.epochs > 0, "set --epochs > 0 or --max-steps >= 1")
        _require(0 <= self.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)")
        for name in ("batch_size", "grad_accum", "max_length", "logging_steps"):
            _require(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1")
        _require(self.checkpoint_steps >= 0, "--checkpoint-steps must be >= 0 (0 = never)")
        _check_choices(self)


@dataclass
class EvalArguments:
    """Evaluation of the base and the tuned model on the held-out rows."""

    eval_batch_size: int = _opt("held-out examples scored per forward / generate call")
    eval_max_new_tokens: int = _opt("generation budget per held-out example")

    def __post_init__(self) -> None:
        _require(self.eval_batch_size >= 1, "--eval-batch-size must be >= 1")
        _require(self.eval_max_new_tokens >= 1, "--eval-max-new-tokens must be >= 1")


@dataclass
class OutputArguments:
    """Where the model version goes and what identifies it."""

    output_dir: str = _opt("final model folder, e.g. <store>/models/<lineage-key> (required)")
    lineage_key: str = _opt("identity of this model version; makes reruns idempotent (required)")
    lineage_json: str = _opt("JSON object of lineage inputs, recorded in the manifest")

    def __post_init__(self) -> None:
        _require(bool(self.output_dir), "--output-dir is required (or set FT_OUTPUT_DIR)")
        _require(bool(self.lineage_key), "--lineage-key is required (or set FT_LINEAGE_KEY)")
        self.lineage()

    def lineage(self) -> dict[str, Any]:
        """The lineage object: the verifier and the pipeline read keys from it."""
        try:
            value = json.loads(self.lineage_json)
        except json.JSONDecodeError as exc:
            message = f"--lineage-json is not valid JSON ({exc.msg}); pass an object"
            raise InputError(message) from exc
        _require(isinstance(value, dict), "--lineage-json must be a JSON object, e.g. '{}'")
        return value


GROUPS = (InputArguments, LoraArguments, TrainArguments, EvalArguments, OutputArguments)


@dataclass(frozen=True)
class JobConfig:
    """Every option of one run, grouped as parsed."""

    inputs: InputArguments
    lora: LoraArguments
    train: TrainArguments
    evaluation: EvalArguments
    output: OutputArguments

    def hyperparameters(self) -> dict[str, Any]:
        """What shapes the weights and the metrics, as recorded in the manifest."""
        values = {**asdict(self.lora), **asdict(self.train), **asdict(self.evaluation)}
        values["target_modules"] = self.lora.modules()
        return values


def env_name(dest: str) -> str:
    """`lora_r` -> `FT_LORA_R`: the environment variable that sets an option."""
    return ENV_PREFIX + dest.upper()


def build_parser() -> Any:
    """The TrlParser for every group, errors raised as InputError, env names in the help."""
    from trl import TrlParser

    class JobParser(TrlParser):
        """Argument errors become InputError, so they exit 2 as one `error:` line."""

        def error(self, message: str) -> NoReturn:
            raise InputError(f"{message} (see --help)")

    parser = JobParser(
        GROUPS,
        prog="finetune.py",
        description="QLoRA/LoRA fine-tune a chat model on Text2Emoji-style data, evaluate it "
        "against its base model, merge it and publish a manifest-sealed model folder.",
        epilog=f"Defaults come from {DEFAULT_CONFIG.name}; {CONFIG_FLAG} FILE (or {CONFIG_ENV}) "
        "overrides them, FT_<OPTION> environment variables override both, flags override all. "
        "Exit codes: 0 done or already done, 2 bad input (nothing written), 1 failure.",
    )
    for action in parser._actions:
        if action.dest != "help":
            action.help = f"{action.help} [env {env_name(action.dest)}]"
    return parser


def parse_config(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> JobConfig:
    """Layer config.yaml < --config FILE < FT_* env < CLI and return validated groups."""
    parser = build_parser()
    args = list(argv)
    user_file = _pop_config_flag(args) or environ.get(CONFIG_ENV) or None
    _apply(parser, read_yaml(DEFAULT_CONFIG), DEFAULT_CONFIG.name)
    if user_file:
        _apply(parser, read_yaml(Path(user_file)), user_file)
    _apply(parser, _env_values(parser, environ), "environment")
    groups = parser.parse_args_into_dataclasses(args=args, look_for_args_file=False)
    return JobConfig(*groups)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping of option names to values."""
    import yaml

    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read config file {path} ({exc})") from exc
    if not isinstance(value, dict):
        raise InputError(f"config file {path} must hold a mapping of option: value")
    return value


def _pop_config_flag(args: list[str]) -> str | None:
    """Remove `--config FILE` / `--config=FILE` from args and return FILE."""
    for index, arg in enumerate(args):
        if arg == CONFIG_FLAG:
            if index + 1 == len(args):
                raise InputError(f"{CONFIG_FLAG} needs a file path")
            del args[index]
            return args.pop(index)
        if arg.startswith(CONFIG_FLAG + "="):
            return args.pop(index).split("=", 1)[1]
    return None


def _env_values(parser: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """Non-empty `FT_<OPTION>` variables; argparse converts string defaults with the type."""
    dests = {action.dest for action in parser._actions if action.dest != "help"}
    return {dest: environ[env_name(dest)] for dest in dests if environ.get(env_name(dest))}


def _apply(parser: Any, values: dict[str, Any], source: str) -> None:
    """Make `values` the parser's defaults; a key that names no option is a mistake."""
    unknown = parser.set_defaults_with_config(**values)
    if unknown:
        names = ", ".join(sorted({item.removeprefix("--") for item in unknown[::2]}))
        raise InputError(f"{source}: unknown option(s) {names} (see --help)")
