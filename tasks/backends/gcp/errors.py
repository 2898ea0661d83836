"""Google API errors → the pipeline's typed errors, with messages an operator can act on.

Only throttling, 5xx and dropped connections become `TransientError` (the one type the tasks
retry); quota, permission, validation and missing-resource errors fail at once, naming the
project, region, resource and the fix. Messages carry Google's own text, which never holds a
secret value (secrets travel only in request bodies, never in URLs or resource names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from core.contracts import ConfigurationError, PipelineError, TransientError
from tasks.backends.gcp.config import GcpNames

TRANSIENT = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
    gexc.Aborted,  # a concurrent change won the race: read again and retry
)
CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout, auth_exc.TransportError)
QUOTA_MARKERS = ("quota", "insufficient_regional", "limit exceeded for")
MESSAGE_CHARS = 300


class QuotaExceeded(ConfigurationError):
    """A quota (GPUs, builds…) is used up: retrying burns time, raising the quota fixes it."""


class PermissionMissing(ConfigurationError):
    """The caller (or an API) is not allowed to do this; a person has to grant or enable it."""


def _summary(error: gexc.GoogleAPICallError) -> str:
    text = " ".join(str(error.message or error).split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "…"


def _is_quota(error: gexc.GoogleAPICallError) -> bool:
    text = f"{error.message} {getattr(error, 'reason', '') or ''}".lower()
    return any(marker in text for marker in QUOTA_MARKERS) and "rate" not in text


def translate(
    error: Exception, names: GcpNames, action: str, resource: str
) -> PipelineError | None:
    """The pipeline error for a failed Google call, or None when it is not a Google error."""
    where = f"{action} {resource} (project {names.project}, region {names.region})"
    if isinstance(error, CONNECTION_ERRORS):
        return TransientError(f"{where}: connection failed ({type(error).__name__}); retrying")
    if isinstance(error, auth_exc.DefaultCredentialsError):
        return ConfigurationError(
            f"{where}: no Google credentials; run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
        )
    if isinstance(error, auth_exc.RefreshError):
        return PermissionMissing(
            f"{where}: cannot mint a token ({error}); with user credentials, grant yourself "
            f"roles/iam.serviceAccountTokenCreator on {names.service_account_email}, or run "
            "as a service account"
        )
    if not isinstance(error, gexc.GoogleAPICallError):
        return None
    detail = _summary(error)
    if isinstance(error, gexc.TooManyRequests | gexc.ResourceExhausted) and _is_quota(error):
        return QuotaExceeded(
            f"{where}: quota exceeded ({detail}); request more at "
            f"https://console.cloud.google.com/iam-admin/quotas?project={names.project} "
            "or pick another region (gcp.region)"
        )
    if isinstance(error, TRANSIENT):
        return TransientError(f"{where}: HTTP {error.code} ({detail}); retrying")
    if isinstance(error, gexc.Unauthorized):
        return PermissionMissing(
            f"{where}: credentials rejected ({detail}); run `gcloud auth application-default login`"
        )
    if isinstance(error, gexc.Forbidden | gexc.PermissionDenied):
        if "SERVICE_DISABLED" in str(error.reason) or "has not been used" in detail:
            fix = "enable the API (the provision step does this; rerun it)"
        else:
            fix = "grant the caller the missing role (e.g. roles/owner or the role named above)"
        return PermissionMissing(f"{where}: permission denied ({detail}); {fix}")
    if isinstance(error, gexc.NotFound):
        return ConfigurationError(
            f"{where}: not found ({detail}); check gcp.project / gcp.region, "
            "or let the provision step create it"
        )
    if isinstance(error, gexc.Conflict | gexc.AlreadyExists):
        return ConfigurationError(
            f"{where}: conflicts with an existing resource ({detail}); the name may be taken "
            "(bucket names are global) or exist with other settings — choose another name"
        )
    return ConfigurationError(f"{where}: rejected with HTTP {error.code} ({detail})")


@contextlib.contextmanager
def google_call(names: GcpNames, action: str, resource: str) -> Iterator[None]:
    """Translate any Google error raised inside into the pipeline's typed error."""
    try:
        yield
    except Exception as error:
        translated = translate(error, names, action, resource)
        if translated is None:
            raise
        raise translated from None


def http_error_to_api_error(error: Exception) -> Exception:
    """googleapiclient's HttpError (IAM admin) → the api_core error for the same status."""
    from googleapiclient.errors import HttpError

    if isinstance(error, HttpError):
        return gexc.from_http_status(int(error.resp.status), error.reason or str(error))
    return error
