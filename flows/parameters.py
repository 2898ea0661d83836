"""The flow's `settings` parameter: every setting optional and unset, merged over the worker's.

Why not `PipelineSettings | None`: Prefect's *Custom run* form renders that as a choice, and
choosing it pre-fills *every* field with its code default, so changing one field silently
overrides the worker's environment and `.env` with the defaults. Here every field is empty
(`None`) unless the operator fills it in; `resolve()` drops the empty ones and lets
`load_settings` take the rest from the worker's `PIPELINE_*` environment, its `.env`, then the
defaults — the same for the UI, `prefect deployment run --params`, triggers and the CLI.

The model is generated from `PipelineSettings`, so a new setting appears in the form with no
second definition to keep in step. Unknown fields are refused (`extra="forbid"`), and fields
marked environment-only (`ENV_ONLY`, e.g. `gcp.api_endpoints`) are left out: no run parameter,
UI form or event can point the pipeline's credentials at another endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from flows.settings import PipelineSettings, env_variable, is_env_only, load_settings

_FORBID_UNKNOWN = ConfigDict(extra="forbid", frozen=True)


class _Given(BaseModel):
    """Base of the generated models: unknown fields are an error, values are final."""

    model_config = _FORBID_UNKNOWN


class _Parameters(_Given):
    def given(self) -> dict[str, Any]:
        """The fields set to a value, nested like `PipelineSettings` (`{}` when none)."""
        return {
            name: value for name, value in self.model_dump(exclude_none=True).items() if value != {}
        }

    def resolve(self) -> PipelineSettings:
        """The run's settings: these values over the environment, `.env` and the defaults."""
        return load_settings(**self.given())


def _shown_default(info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if isinstance(default, tuple):
        return ",".join(str(part) for part in default)
    if isinstance(default, Path):
        return default.as_posix()
    if isinstance(default, bool):
        return str(default).lower()
    return "unset" if default is None else str(default)


def _empty_field(dotted: str, info: FieldInfo) -> tuple[Any, Any]:
    """`T | None = None`, keeping the field's bounds and saying where an empty one comes from."""
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]
    text = info.description or ""
    description = (
        f"{text} Empty: the worker's {env_variable(dotted)} (or .env), else {_shown_default(info)}."
    ).strip()
    return annotation | None, Field(None, title=info.title, description=description)


def _empty_section(name: str, section: type[BaseModel]) -> type[_Given]:
    fields = {
        field: _empty_field(f"{name}.{field}", info)
        for field, info in section.model_fields.items()
        if not is_env_only(info)
    }
    return create_model(  # type: ignore[call-overload, no-any-return]
        section.__name__.replace("Settings", "Parameters"),
        __base__=_Given,
        __doc__=section.__doc__,
        **fields,
    )


def _parameters_model() -> type[_Parameters]:
    fields: dict[str, Any] = {}
    for name, info in PipelineSettings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            model = _empty_section(name, section)
            fields[name] = (model, Field(default_factory=model, description=section.__doc__))
        elif not is_env_only(info):
            fields[name] = _empty_field(name, info)
    return create_model(  # type: ignore[call-overload, no-any-return]
        "PipelineParameters",
        __base__=_Parameters,
        __doc__="Settings for this run; empty fields come from the worker.",
        **fields,
    )


PipelineParameters = _parameters_model()
NOTHING_SET = PipelineParameters()
