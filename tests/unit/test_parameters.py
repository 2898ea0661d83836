"""The flow's `settings` parameter: empty fields come from the worker; no test hook gets in."""

from __future__ import annotations

import json

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from flows.finetune import finetune_pipeline
from flows.parameters import NOTHING_SET, PipelineParameters
from flows.settings import PipelineSettings
from flows.teardown import teardown

HOOK = {"gcp": {"api_endpoints": {"*": "http://attacker.example"}}}


def _leaves(schema: dict[str, object]) -> dict[str, dict[str, object]]:
    """Dotted name → JSON schema of every leaf field of PipelineParameters."""
    defs = schema["$defs"]  # type: ignore[index]
    leaves = {}
    for name, prop in schema["properties"].items():  # type: ignore[union-attr]
        ref = prop.get("$ref") or next(
            (item["$ref"] for item in prop.get("anyOf", []) if "$ref" in item), None
        )
        if ref is None:
            leaves[name] = prop
            continue
        section = defs[ref.rsplit("/", 1)[-1]]  # type: ignore[index]
        leaves.update({f"{name}.{leaf}": p for leaf, p in section["properties"].items()})
    return leaves


@pytest.mark.parametrize("flow", [finetune_pipeline, teardown], ids=["pipeline", "teardown"])
def test_flow_schema_has_no_test_hook_and_refuses_one(flow: object) -> None:
    schema = parameter_schema(flow.fn).model_dump()  # type: ignore[attr-defined]
    assert "api_endpoints" not in json.dumps(schema)
    with pytest.raises(ParameterTypeError, match="api_endpoints"):
        flow.validate_parameters({"settings": HOOK})  # type: ignore[attr-defined]


def test_every_field_is_empty_by_default_and_says_where_its_value_comes_from() -> None:
    leaves = _leaves(PipelineParameters.model_json_schema())
    settings_leaves = {
        f"{name}.{leaf}" if hasattr(info.annotation, "model_fields") else name
        for name, info in PipelineSettings.model_fields.items()
        for leaf in getattr(info.annotation, "model_fields", {name: None})
    }
    assert set(leaves) == settings_leaves - {"gcp.api_endpoints"}
    assert all(leaf["default"] is None for leaf in leaves.values())
    rank = leaves["training.lora_r"]["description"]
    assert "PIPELINE_TRAINING__LORA_R" in rank and "else 16" in rank  # type: ignore[operator]
    assert "else KomeijiForce/Text2Emoji" in leaves["data.dataset"]["description"]  # type: ignore[operator]
    assert NOTHING_SET.given() == {}


def test_one_field_set_keeps_the_environment_for_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_MODEL__BASE_MODEL", "./from-the-env")
    monkeypatch.setenv("PIPELINE_TRAINING__LORA_R", "32")
    monkeypatch.setenv("PIPELINE_TRAINING__EPOCHS", "3")
    # What the UI form sends: every field, the untouched ones as null.
    form = json.loads(NOTHING_SET.model_dump_json())
    form["training"]["lora_r"] = 4
    settings = PipelineParameters.model_validate(form).resolve()
    assert settings.training.lora_r == 4
    assert settings.training.epochs == 3
    assert settings.model.base_model == "./from-the-env"
    assert settings.training.lora_alpha == 32  # neither given nor in the environment: default


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="lora_rank"):
        PipelineParameters.model_validate({"training": {"lora_rank": 4}})
    with pytest.raises(ValueError, match="api_endpoints"):
        PipelineParameters.model_validate(HOOK)


def test_endpoint_overrides_still_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_GCP__API_ENDPOINTS", '{"*": "http://127.0.0.1:9"}')
    settings = PipelineParameters(gcp={"project": "my-project-1"}).resolve()
    assert settings.gcp.api_endpoints == {"*": "http://127.0.0.1:9"}
