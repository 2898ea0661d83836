"""The README's settings reference stays in step with `PipelineSettings`."""

from __future__ import annotations

from pydantic import BaseModel

from flows.cli import build_parser
from flows.settings import PipelineSettings
from tests.conftest import REPO_ROOT


def _env_names() -> list[str]:
    names = []
    for section, info in PipelineSettings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += [f"PIPELINE_{section}__{field}".upper() for field in annotation.model_fields]
        else:
            names.append(f"PIPELINE_{section}".upper())
    return names


def test_readme_documents_every_setting_and_option() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in _env_names() if f"`{name}`" not in readme]
    assert not missing, f"README settings table lacks {missing}"
    options = [o for a in build_parser()._actions for o in a.option_strings if o.startswith("--")]
    undocumented = [o for o in options if o != "--help" and f"`{o}`" not in readme]
    assert not undocumented, f"README lacks options {undocumented}"
