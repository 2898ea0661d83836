"""Preflight and error messages of the gcp backend: one actionable line, before any change."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.exceptions import RefreshError

from core.contracts import ConfigurationError, TransientError
from flows.settings import SettingsError, load_settings
from flows.wiring import build_backend
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.errors import PermissionMissing, QuotaExceeded, translate
from tests.conftest import REPO_ROOT

NAMES = GcpNames.from_settings(GcpSettings(project="my-project-1"))


@pytest.mark.parametrize(
    ("gcp", "expected"),
    [
        ({"project": "My_Project"}, "gcp.project='My_Project': must be a project id"),
        ({"project": "my-project-1", "region": "us-west2"}, "does not offer Cloud Run L4 GPUs"),
        (
            {"project": "my-project-1", "job": "Train_Job"},
            "gcp.job='Train_Job': must be a Cloud Run name",
        ),
        ({"project": "my-project-1", "bucket": "-bad"}, "gcp.bucket='-bad': must be a bucket name"),
        ({"project": "my-project-1", "vllm_image": "vllm"}, "pinned tag or digest"),
        ({"project": "my-project-1", "cpu": 2}, "gcp.cpu=2"),
        ({"project": "my-project-1", "min_instances": 2}, "gcp.min_instances=2"),
        ({"project": "my-project-1", "min_instances": -1}, "gcp.min_instances=-1"),
        ({"project": "my-project-1", "api_endpoints": {"runn": "http://x"}}, "unknown API"),
    ],
)
def test_invalid_gcp_settings_fail_with_one_line(gcp: dict[str, object], expected: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, backend="gcp", gcp=gcp)
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_gcp_needs_a_project_and_a_task_timeout_within_the_gpu_cap() -> None:
    with pytest.raises(SettingsError, match=r"needs gcp\.project"):
        load_settings(_env_file=None, backend="gcp")
    with pytest.raises(SettingsError, match="3600 s cap on GPU job tasks"):
        load_settings(
            _env_file=None,
            backend="gcp",
            gcp={"project": "my-project-1"},
            training={"timeout_s": 7200},
        )


def test_the_region_list_and_endpoints_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_GCP__GPU_REGIONS", "us-central1, europe-west4")
    monkeypatch.setenv("PIPELINE_GCP__API_ENDPOINTS", '{"*": "http://127.0.0.1:9"}')
    settings = load_settings(
        _env_file=None, backend="gcp", gcp={"project": "my-project-1", "region": "europe-west4"}
    )
    assert settings.gcp.gpu_regions == ("us-central1", "europe-west4")
    assert settings.gcp.api_endpoints == {"*": "http://127.0.0.1:9"}


def test_building_the_backend_needs_no_credentials_and_calls_nothing() -> None:
    backend = build_backend(
        load_settings(_env_file=None, backend="gcp", gcp={"project": "my-project-1"})
    )
    assert backend.name == "gcp"
    assert backend.store.root_uri == "gs://my-project-1-emoji-models"
    assert backend.store.local_dir("models/x") is None


def test_the_cli_reports_a_bad_gcp_setting_in_one_line_and_exits_2() -> None:
    argv = ["--backend", "gcp", "--gcp-project", "my-project-1", "--gcp-region", "mars-north1"]
    completed = subprocess.run(
        [sys.executable, "-m", "flows.finetune", *argv],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert completed.returncode == 2
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("error: ") and "mars-north1" in line and "europe-west1" in line


@pytest.mark.parametrize(
    ("error", "kind", "fragment"),
    [
        (
            gexc.TooManyRequests("Quota exceeded for quota metric 'L4 GPUs'"),
            QuotaExceeded,
            "quotas?project=my-project-1",
        ),
        (gexc.TooManyRequests("Rate limit exceeded"), TransientError, "HTTP 429"),
        (gexc.ServiceUnavailable("try again"), TransientError, "HTTP 503"),
        (gexc.Aborted("concurrent change"), TransientError, "changed concurrently"),
        (gexc.Unknown("Build failed"), ConfigurationError, "failed with Unknown"),
        (
            gexc.Forbidden("run.googleapis.com has not been used in project 1"),
            PermissionMissing,
            "enable the API",
        ),
        (
            gexc.PermissionDenied("caller lacks run.jobs.create"),
            PermissionMissing,
            "grant the caller",
        ),
        (gexc.NotFound("no such job"), ConfigurationError, "not found"),
        (gexc.Conflict("bucket name not available"), ConfigurationError, "choose another name"),
        (gexc.BadRequest("bad field"), ConfigurationError, "HTTP 400"),
        (requests.ConnectionError("reset"), TransientError, "connection failed"),
        (RefreshError("impersonation denied"), PermissionMissing, "serviceAccountTokenCreator"),
    ],
)
def test_google_errors_map_to_typed_errors_naming_project_region_and_fix(
    error: Exception, kind: type[Exception], fragment: str
) -> None:
    translated = translate(error, NAMES, "create", "job emoji-finetune")
    assert type(translated) is kind
    message = str(translated)
    assert (
        "my-project-1" in message and "europe-west1" in message and "job emoji-finetune" in message
    )
    assert fragment in message and "retrying" not in message, "the caller decides on retries"


def test_only_transient_errors_are_retried_by_the_tasks() -> None:
    from tasks.policy import is_transient

    assert is_transient(translate(gexc.ServiceUnavailable("x"), NAMES, "read", "r"))
    assert not is_transient(translate(gexc.TooManyRequests("Quota exceeded"), NAMES, "read", "r"))
    assert not is_transient(translate(gexc.PermissionDenied("x"), NAMES, "read", "r"))
