"""The job's configuration layers: config.yaml < --config FILE < FT_* env < CLI flags.

In-process (no training): these are the rules the Cloud Run job (env) and the local runner
(flags) rely on to set exactly what they name and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from job_modules import JOB_IMAGE, job_module

config = job_module("config")
REQUIRED = ["--model", "m", "--dataset", "d.jsonl", "--output-dir", "out", "--lineage-key", "k"]
REQUIRED_DESTS = {"model", "dataset", "output_dir", "lineage_key"}


def parse(*args: str, env: dict[str, str] | None = None) -> object:
    return config.parse_config([*REQUIRED, *args], env or {})


def test_config_yaml_holds_every_default_and_nothing_else() -> None:
    defaults = yaml.safe_load((JOB_IMAGE / "config.yaml").read_text())
    dests = {a.dest for a in config.build_parser()._actions if a.dest != "help"}
    assert set(defaults) == dests - REQUIRED_DESTS


def test_defaults_come_from_config_yaml() -> None:
    cfg = parse()
    defaults = yaml.safe_load((JOB_IMAGE / "config.yaml").read_text())
    assert cfg.lora.lora_r == defaults["lora_r"]
    assert cfg.train.packing is True and cfg.train.loss_on == "answer"
    assert cfg.lora.modules() == defaults["target_modules"].split(",")
    assert cfg.inputs.model_revision is None


def test_each_layer_overrides_only_what_it_names(tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("lora_r: 4\nlora_alpha: 4\nlearning_rate: 0.1\n")
    env = {"FT_LORA_ALPHA": "16", "FT_LEARNING_RATE": "0.01", "FT_SEED": ""}  # empty = unset
    cfg = parse("--config", str(user), "--lora-alpha", "64", env=env)
    assert cfg.lora.lora_r == 4  # the --config file beats config.yaml
    assert cfg.train.learning_rate == 0.01  # env beats the file
    assert cfg.lora.lora_alpha == 64  # the flag beats env
    assert cfg.lora.lora_dropout == 0.05 and cfg.inputs.seed == 42  # untouched defaults


def test_config_file_from_env_and_required_options_from_env(tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("packing: false\nlr_scheduler: linear\n")
    env = {"FT_CONFIG": str(user), "FT_MODEL": "m", "FT_DATASET": "d", "FT_OUTPUT_DIR": "o"}
    cfg = config.parse_config(["--lineage_key", "k"], {**env, "FT_LOSS_ON": "sequence"})
    assert (cfg.train.packing, cfg.train.lr_scheduler, cfg.train.loss_on) == (
        False,
        "linear",
        "sequence",
    )
    assert (cfg.inputs.model, cfg.output.output_dir) == ("m", "o")


def test_hyperparameters_record_lists_and_every_weight_shaping_option() -> None:
    hyper = parse("--target-modules", "q_proj, v_proj").hyperparameters()
    assert hyper["target_modules"] == ["q_proj", "v_proj"]
    assert {"lora_r", "learning_rate", "lr_scheduler", "packing", "loss_on"} <= set(hyper)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"FT_LORA_R": "sixteen"}, "lora_r"),
        ((), {"FT_METHOD": "sgd"}, "--method"),
        (("--lr-scheduler", "step"), {}, "lr_scheduler"),
        (("--warmup-ratio", "1.5"), {}, "--warmup-ratio"),
        (("--checkpoint-steps", "-1"), {}, "--checkpoint-steps"),
        (("--eval-size", "1000", "--sample-size", "10"), {}, "--eval-size"),
        (("--config",), {}, "--config"),
    ],
)
def test_bad_values_are_input_errors(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(config.InputError, match=expected):
        parse(*args, env=env)


def test_unknown_key_in_a_config_file_is_an_input_error(tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("lora_rank: 8\n")
    with pytest.raises(config.InputError, match=r"unknown option.*lora_rank"):
        parse("--config", str(user))
    user.write_text("- not a mapping\n")
    with pytest.raises(config.InputError, match="mapping"):
        parse(f"--config={user}")


def test_pipeline_training_defaults_are_the_jobs() -> None:
    """The flow passes its training settings as flags: their defaults must be config.yaml's,
    or the pipeline would silently train another recipe than the one documented there."""
    from flows.settings import TrainingSettings

    defaults = yaml.safe_load((JOB_IMAGE / "config.yaml").read_text())
    settings = TrainingSettings().model_dump(exclude={"timeout_s"})
    settings["target_modules"] = ",".join(settings["target_modules"])
    assert settings == {name: defaults[name] for name in settings}
