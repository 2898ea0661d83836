"""Settings: bad values fail with the field and the fix; env and overrides merge."""

from __future__ import annotations

import pytest

from flows.cli import build_parser, overrides_from_args
from flows.settings import PipelineSettings, SettingsError, load_settings


def test_defaults_reproduce_the_codelab() -> None:
    settings = load_settings()
    assert settings.backend == "local"
    assert settings.model.base_model == "google/gemma-3-1b-it"
    assert settings.data.dataset == "KomeijiForce/Text2Emoji"
    assert settings.data.sample_size == 1000
    assert settings.serving.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("overrides", "field", "env"),
    [
        ({"training": {"learning_rate": -1}}, "training.learning_rate", "TRAINING__LEARNING_RATE"),
        ({"data": {"sample_size": 3}}, "data.sample_size", "DATA__SAMPLE_SIZE"),
        ({"serving": {"port": 70000}}, "serving.port", "SERVING__PORT"),
        ({"model": {"served_model_name": "bad name!"}}, "model.served_model_name", "MODEL__"),
        ({"training": {"method": "full"}}, "training.method", "TRAINING__METHOD"),
        ({"training": {"lora_rank": 8}}, "training.lora_rank", "TRAINING__LORA_RANK"),
        ({"gcp": {"project": "Bad_Project"}}, "gcp.project", "GCP__PROJECT"),
    ],
)
def test_invalid_value_names_field_and_env_variable(
    overrides: dict[str, object], field: str, env: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert "\n" not in message
    assert f"setting {field}" in message  # "invalid setting …" or "unknown setting …"
    assert f"PIPELINE_{env}" in message


def test_each_message_names_the_variable_and_option_of_the_field() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(gcp={"region": "us-west9"})
    assert "PIPELINE_GCP__REGION or --gcp-region" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        load_settings(data={"sample_size": 40, "eval_size": 50})
    message = str(caught.value)
    assert "PIPELINE_DATA__EVAL_SIZE or --eval-size" in message
    assert "PIPELINE_DATA (" not in message and "set PIPELINE_DATA " not in message


def test_cross_field_rules_explain_the_fix() -> None:
    with pytest.raises(SettingsError, match=r"data\.eval_size \(50\) must be smaller"):
        load_settings(data={"sample_size": 40, "eval_size": 50})
    with pytest.raises(SettingsError, match=r"backend 'gcp' needs gcp\.project"):
        load_settings(backend="gcp")


def test_environment_and_explicit_values_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_TRAINING__LORA_R", "8")
    monkeypatch.setenv("PIPELINE_TRAINING__LEARNING_RATE", "0.5")
    monkeypatch.setenv("PIPELINE_TRAINING__TARGET_MODULES", "q_proj,v_proj")
    settings = load_settings(training={"learning_rate": 0.001})
    assert settings.training.lora_r == 8  # from the environment
    assert settings.training.learning_rate == 0.001  # explicit beats environment
    assert settings.training.target_modules == ("q_proj", "v_proj")


def test_cli_options_map_onto_nested_settings() -> None:
    namespace = build_parser().parse_args(
        ["--backend", "local", "--lora-r", "4", "--target-modules", "q_proj, v_proj",
         "--keep-serving", "--store", "/srv/store"]
    )  # fmt: skip
    settings = PipelineSettings(**overrides_from_args(namespace))
    assert settings.training.lora_r == 4
    assert settings.training.target_modules == ("q_proj", "v_proj")
    assert settings.serving.keep_serving is True
    assert str(settings.local.root) == "/srv/store"
    assert settings.training.lora_alpha == 32  # untouched fields keep defaults


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.training.lora_r = 3  # type: ignore[misc]
