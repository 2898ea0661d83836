"""Google API errors → the pipeline's typed errors, with messages an operator can act on.

Over REST, `google.api_core` maps errors by HTTP status only: a 409 is `Conflict` whether Google
meant ALREADY_EXISTS (lost a create race) or ABORTED (stale etag), and a 403 is `Forbidden`
whether a role is missing or an API is still being enabled. What Google meant is in the JSON
body (`error.status`, and the ErrorInfo detail's `reason` and `metadata`), so this module reads
it there. `calls.GoogleCalls` decides what to retry from these facts; everything else fails at
once, naming the project, region, resource and the fix. Messages carry Google's own text, which
never holds a secret value (secrets travel only in request bodies, never in URLs or names).
"""

from __future__ import annotations

import json
from typing import Any

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
)
CONNECTION_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    auth_exc.TransportError,
    ConnectionError,
)
QUOTA_MARKERS = ("quota", "insufficient_regional", "limit exceeded for")
MESSAGE_CHARS = 300
ALREADY_EXISTS = "ALREADY_EXISTS"
ABORTED = "ABORTED"
SERVICE_DISABLED = "SERVICE_DISABLED"
_GRPC_ONLY_STATUS = {gexc.AlreadyExists: ALREADY_EXISTS, gexc.Aborted: ABORTED}


class QuotaExceeded(ConfigurationError):
    """A quota (GPUs, builds…) is used up: retrying burns time, raising the quota fixes it."""


class PermissionMissing(ConfigurationError):
    """The caller (or an API) is not allowed to do this; a person has to grant or enable it."""


def as_api_error(error: Exception) -> Exception:
    """googleapiclient's HttpError (IAM admin) → the api_core error Google's body describes,
    with its status, details and ErrorInfo, so both client families are judged alike."""
    from googleapiclient.errors import HttpError

    if not isinstance(error, HttpError):
        return error
    payload = _json(error.content)
    body = payload.get("error", {}) if isinstance(payload, dict) else {}
    details = body.get("details", []) or []
    info = next((d for d in details if str(d.get("@type", "")).endswith("rpc.ErrorInfo")), None)
    status = body.get("status")
    message = body.get("message") or str(error)
    kind = {ABORTED: gexc.Aborted, ALREADY_EXISTS: gexc.AlreadyExists}.get(status)
    if kind is not None:
        return kind(message, details=details, error_info=info)
    return gexc.from_http_status(int(error.resp.status), message, details=details, error_info=info)


def _json(raw: object) -> Any:
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return {}


def error_status(error: BaseException) -> str:
    """Google's canonical status of a failed call (ALREADY_EXISTS, ABORTED…), read from the
    response body; "" when the error carries none."""
    for kind, status in _GRPC_ONLY_STATUS.items():
        if isinstance(error, kind):
            return status
    response = getattr(error, "response", None)
    if response is not None and hasattr(response, "json"):
        try:
            body = response.json()
        except ValueError:
            return ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"].get("status") or "")
    return ""


def disabled_service(error: BaseException) -> str | None:
    """The API a 403 SERVICE_DISABLED names (ErrorInfo metadata `service`), else None."""
    if not isinstance(error, gexc.Forbidden | gexc.PermissionDenied):
        return None
    if str(error.reason) != SERVICE_DISABLED:
        return None
    metadata = error.metadata or {}
    return str(metadata.get("service") or "") or "an API"


def is_quota(error: gexc.GoogleAPICallError) -> bool:
    return is_quota_text(f"{error.message} {error.reason or ''}")


def is_quota_text(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in QUOTA_MARKERS) and "rate" not in lowered


def is_transient(error: BaseException) -> bool:
    """Throttling without a quota behind it, 5xx, dropped connections: worth another try."""
    if isinstance(error, CONNECTION_ERRORS):
        return True
    return isinstance(error, TRANSIENT) and not is_quota(error)


def summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "…"


def where(names: GcpNames, action: str, resource: str) -> str:
    return f"{action} {resource} (project {names.project}, region {names.region})"


def quota_exceeded(names: GcpNames, what: str, detail: str) -> QuotaExceeded:
    return QuotaExceeded(
        f"{what}: quota exceeded ({summary(detail)}); request more at "
        f"https://console.cloud.google.com/iam-admin/quotas?project={names.project} "
        "or pick another region (gcp.region)"
    )


def translate(
    error: Exception, names: GcpNames, action: str, resource: str
) -> PipelineError | None:
    """The pipeline error for a failed Google call, or None when it is not a Google error."""
    at = where(names, action, resource)
    if isinstance(error, CONNECTION_ERRORS):
        return TransientError(f"{at}: connection failed ({type(error).__name__})")
    if isinstance(error, auth_exc.DefaultCredentialsError):
        return ConfigurationError(
            f"{at}: no Google credentials; run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
        )
    if isinstance(error, auth_exc.RefreshError):
        return PermissionMissing(
            f"{at}: cannot mint a token ({error}); whoever runs the flow needs "
            f"roles/iam.serviceAccountTokenCreator on {names.invoker_email} (bootstrap grants "
            f"it to {names.account_email('runner')}: run as that account)"
        )
    if not isinstance(error, gexc.GoogleAPICallError):
        return None
    detail = summary(str(error.message or error))
    if isinstance(error, gexc.TooManyRequests | gexc.ResourceExhausted) and is_quota(error):
        return quota_exceeded(names, at, detail)
    if isinstance(error, TRANSIENT):
        return TransientError(f"{at}: HTTP {error.code} ({detail})")
    if isinstance(error, gexc.Unauthorized):
        return PermissionMissing(
            f"{at}: credentials rejected ({detail}); run `gcloud auth application-default login`"
        )
    if isinstance(error, gexc.Forbidden | gexc.PermissionDenied):
        if disabled_service(error) is not None or "has not been used" in detail:
            fix = "enable the API (the provision step does this; rerun it)"
        else:
            fix = "grant the caller the missing role (e.g. roles/owner or the role named above)"
        return PermissionMissing(f"{at}: permission denied ({detail}); {fix}")
    if isinstance(error, gexc.NotFound):
        return ConfigurationError(
            f"{at}: not found ({detail}); check gcp.project / gcp.region, "
            "or let the provision step create it"
        )
    status = error_status(error)
    if status == ABORTED:
        return TransientError(f"{at}: changed concurrently ({detail})")
    if isinstance(error, gexc.Conflict):
        return ConfigurationError(
            f"{at}: conflicts with an existing resource ({detail}); the name may be taken "
            "(bucket names are global) or exist with other settings — choose another name"
        )
    code = f"HTTP {error.code}" if error.code else (status or type(error).__name__)
    return ConfigurationError(f"{at}: failed with {code} ({detail})")
