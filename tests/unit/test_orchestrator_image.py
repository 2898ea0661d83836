"""The orchestrator's build context and its work pool's template, without any server."""

from __future__ import annotations

from pathlib import Path

from core.hashing import sha256_tree
from deployments.cloud_run_pool import BASE_ENV, cloud_run_template
from deployments.orchestrator_image import CONTEXT_PATHS, DOCKERFILE, assemble_context
from tasks.backends.gcp.config import GcpSettings

DIGEST = "sha256:" + "ab" * 32


def test_same_code_same_context_and_only_the_code_counts(tmp_path: Path) -> None:
    first = assemble_context(tmp_path / "first")
    assert (first / "Dockerfile").read_bytes() == DOCKERFILE.read_bytes()
    assert {p.name for p in first.iterdir()} == {*CONTEXT_PATHS, "Dockerfile"}
    assert not list(first.rglob("*.pyc")) and not list(first.rglob("__pycache__"))

    # A checkout with local leftovers (a .env, bytecode, a model folder) builds the same image.
    (first / ".env").write_text("PIPELINE_GCP__PROJECT=mine\n")
    (first / ".pipeline").mkdir()
    (first / "flows" / "__pycache__").mkdir(exist_ok=True)
    (first / "flows" / "__pycache__" / "finetune.cpython-311.pyc").write_bytes(b"\0")
    again = assemble_context(tmp_path / "again", root=first)
    assert sha256_tree(again) == sha256_tree(assemble_context(tmp_path / "third"))

    (first / "flows" / "finetune.py").write_text("# edited\n")
    edited = assemble_context(tmp_path / "edited", root=first)
    assert sha256_tree(edited) != sha256_tree(again), "changed code is a new image"


def test_template_is_filled_from_the_settings() -> None:
    gcp = GcpSettings(
        project="emoji-prod-1",
        region="us-central1",
        bucket="emoji-models-prod",
        api_endpoints={"*": "http://127.0.0.1:9"},
    )
    template = cloud_run_template(gcp, f"host/p/r/orchestrator@{DIGEST}")
    properties = template["variables"]["properties"]
    assert properties["image"]["default"] == f"host/p/r/orchestrator@{DIGEST}"
    assert properties["service_account_name"]["default"] == (
        "emoji-finetune-runner@emoji-prod-1.iam.gserviceaccount.com"
    )
    assert properties["region"]["default"] == "us-central1"
    assert properties["credentials"]["default"] == {"project": "emoji-prod-1"}
    assert properties["env"]["default"] == BASE_ENV | {
        "PIPELINE_GCP__PROJECT": "emoji-prod-1",
        "PIPELINE_GCP__REGION": "us-central1",
        "PIPELINE_GCP__BUCKET": "emoji-models-prod",
    }, "non-default settings only; endpoint overrides (test hooks) never"


def test_template_without_a_project_names_none() -> None:
    properties = cloud_run_template(None, None)["variables"]["properties"]
    assert "default" not in properties["image"]
    assert "default" not in properties["service_account_name"]
    assert properties["env"]["default"] == BASE_ENV
