"""One local HTTP server standing in for the Google control-plane APIs the backend calls.

Cloud Run v2 (jobs, executions, services, revisions, operations), Secret Manager, Artifact
Registry, Cloud Build, Service Usage, IAM, Resource Manager (project IAM policies) and Cloud
Logging (`entries.list`, in logging_api.py: what executions print) have no emulator, so this
fake implements the methods the backend uses with Google's semantics: 404 for a missing
resource, 409 for a duplicate, etags on IAM policies and resources (a stale etag is a 409
ABORTED, 412 on GCS), long-running operations, 403 SERVICE_DISABLED until an API is enabled,
and bodies validated against Google's discovery documents. Storage requests are proxied to the
real GCS emulator (fake-gcs-server), adding what it lacks: bucket location, uniform access and
bucket IAM.

Faults come the way Google produces them, on demand:

- `inject(method, code, …)`: answer the next calls with an error in Google's JSON shape; with
  `after=True` the call is *performed* first (the client still sees the error: a lost answer),
  with `reset=True` the connection drops instead of answering.
- `fail_first_mutation_of_each_api(...)`: one error on the first mutating call of every API.
- `change_concurrently(method)`: another writer changes the resource (or its IAM policy) just
  before the call, so the call's etag is stale and Google's own check answers 409 ABORTED.
- `propagation_calls = N`: after `services:batchEnable`, each newly enabled API still answers
  403 SERVICE_DISABLED (with Google's ErrorInfo) to its next N calls.
- `listing_lag = N`: a new execution or build is missing from the next N listings.
- `work_polls = N`: executions and builds keep running for N reads before they end; an
  execution prints a line to Cloud Logging when it starts and on each read, the rest when it
  ends (`logs.lag_s`: how long entries take to become visible).
- `gpu_quota[(metric, region)] = N` sets a region's Cloud Run GPU quota (Service Usage v1beta1
  consumer quota metrics); other regions get `gpu_quota_default` (a project granted quota).
  An unknown metric is a 404, as at Google.
- `execution_seconds = N`: an execution's completionTime is its startTime + N s (otherwise
  the wall clock), so a test knows the usage a run is billed for.
- `execution_mode` makes executions succeed, fail, fail for want of GPU quota, or stay running;
  `builds_fail` makes a build fail (its operation ends with code 2 UNKNOWN, the build FAILURE);
  a build also fails, as docker's pull would, when a `--build-arg` names a registry image by a
  digest no tag points at; the `-t` tags of one docker step share one pushed digest;
  `revisions_fail` makes a new revision fail its Ready condition.

`on_execution` runs when an execution succeeds (it writes a model into the bucket) and
`url_for_tag` says where each tag's URL points. Every request is recorded (`requests`), so a
test can assert that a rerun mutated nothing.
"""

from __future__ import annotations

import base64
import calendar
import http.client
import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tests.fakes.discovery import InvalidBody, Route, match, validate
from tests.fakes.logging_api import LoggingError, LoggingFake

RUN = "type.googleapis.com/google.cloud.run.v2."
SERVICE_DISABLED_APIS = {
    "run.v2": "run.googleapis.com",
    "secretmanager.v1": "secretmanager.googleapis.com",
    "artifactregistry.v1": "artifactregistry.googleapis.com",
    "cloudbuild.v1": "cloudbuild.googleapis.com",
    "iam.v1": "iam.googleapis.com",
    "cloudresourcemanager.v3": "cloudresourcemanager.googleapis.com",
    "logging.v2": "logging.googleapis.com",
}
GRPC_CODES = {400: 3, 403: 7, 404: 5, 409: 10, 429: 8, 500: 13, 503: 14}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
ExecutionMode = Literal["succeed", "fail", "quota", "hold"]
GPU_QUOTA_METRICS = {  # Cloud Run's two L4 quotas, as Service Usage names them
    "run.googleapis.com/nvidia_l4_gpu_allocation_no_zonal_redundancy": (
        "Total Nvidia L4 GPU allocation without zonal redundancy, per project per region"
    ),
    "run.googleapis.com/nvidia_l4_gpu_allocation": (
        "Total Nvidia L4 GPU allocation with zonal redundancy, per project per region"
    ),
}
GPU_QUOTA_MESSAGE = (
    "Task emoji-finetune-task0 could not be started: Quota exceeded for quota metric "
    "'Total Nvidia L4 GPU allocation without zonal redundancy, per project per region' and "
    "limit 'Total Nvidia L4 GPU allocation without zonal redundancy, per project per region "
    "per project per region' of service 'run.googleapis.com'."
)
REVISION_FAILURE = (
    "The user-provided container failed to start and listen on the port defined provided by "
    "the PORT=8000 environment variable within the allocated timeout."
)
API_TITLES = {
    "run.googleapis.com": "Cloud Run Admin API",
    "secretmanager.googleapis.com": "Secret Manager API",
    "artifactregistry.googleapis.com": "Artifact Registry API",
    "cloudbuild.googleapis.com": "Cloud Build API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "storage.googleapis.com": "Cloud Storage JSON API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "logging.googleapis.com": "Cloud Logging API",
}
DELETED_TYPES = {
    "run.projects.locations.services.delete": "google.cloud.run.v2.Service",
    "run.projects.locations.jobs.delete": "google.cloud.run.v2.Job",
}


class ApiError(Exception):
    """An error response in Google's JSON shape."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        reason: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.reason = reason
        self.metadata = metadata or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": str(self), "status": self.status}
        if self.reason:
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.reason}
            info |= {"domain": "googleapis.com", "metadata": self.metadata}
            error["details"] = [info]
        return {"error": error}


def service_disabled(service: str, project_number: str) -> ApiError:
    """Google's 403 for a call to an API that is disabled (or whose enabling propagates)."""
    title = API_TITLES.get(service, service)
    url = f"https://console.developers.google.com/apis/api/{service}/overview?project={project_number}"
    return ApiError(
        403,
        f"{title} has not been used in project {project_number} before or it is disabled. "
        f"Enable it by visiting {url} then retry. If you enabled this API recently, wait a few "
        "minutes for the action to propagate to our systems and retry.",
        "PERMISSION_DENIED",
        reason="SERVICE_DISABLED",
        metadata={
            "service": service,
            "consumer": f"projects/{project_number}",
            "activationUrl": url,
            "serviceTitle": title,
            "containerInfo": project_number,
        },
    )


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    method_id: str
    body: Any
    mutating: bool


@dataclass
class Fault:
    method_id: str
    code: int
    message: str
    status: str | None
    times: int
    after: bool = False  # perform the call, then answer the error (the answer is lost)
    reset: bool = False  # drop the connection instead of answering
    reason: str = ""
    error: ApiError | None = None  # a whole error to answer with


class ConnectionReset(Exception):
    """Raised inside the fake to drop the connection without an answer."""


@dataclass
class State:
    """Everything the fake knows, keyed by full resource name."""

    enabled: set[str] = field(default_factory=set)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now() -> str:
    return time.strftime(TIME_FORMAT, time.gmtime())


class GoogleApisFake:
    """The fake's state and behaviour; `serve()` puts it behind an HTTP server."""

    def __init__(self, gcs_url: str, project_number: str = "123456789012") -> None:
        self.gcs = urllib.parse.urlsplit(gcs_url)
        self.project_number = project_number
        self.state = State()
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.execution_mode: ExecutionMode = "succeed"
        self.gpu_quota: dict[tuple[str, str], int] = {}
        self.gpu_quota_default = 3
        self.execution_seconds: int | None = None
        self.on_execution: Callable[[list[str]], None] | None = None
        self.revisions_fail = False
        self.builds_fail = False
        self.propagation_calls = 0
        self.listing_lag = 0
        self._propagating: dict[str, int] = {}
        self._hidden: dict[str, int] = {}
        self._first_mutation: Fault | None = None
        self._apis_failed: set[str] = set()
        self._concurrent: dict[str, int] = {}
        self.work_polls = 0
        self.logs = LoggingFake()
        self._working: dict[str, int] = {}
        self.url_for_tag: Callable[[str], str] = lambda tag: "http://127.0.0.1:9"
        self.service_url = "http://127.0.0.1:9"
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ test controls

    def inject(
        self,
        method_id: str,
        code: int,
        message: str = "injected",
        status: str | None = None,
        times: int = 1,
        *,
        after: bool = False,
        reset: bool = False,
        reason: str = "",
    ) -> None:
        """Answer the next `times` calls of `method_id` with this error (after performing
        them when `after`; by dropping the connection when `reset`)."""
        self.faults.append(Fault(method_id, code, message, status, times, after, reset, reason))

    def fail_first_mutation_of_each_api(
        self,
        code: int = 503,
        message: str = "The service is currently unavailable.",
        *,
        after: bool = False,
        reset: bool = False,
    ) -> None:
        """One error on the first mutating call of every API (storage included)."""
        self._first_mutation = Fault("*", code, message, None, 1, after, reset)

    def change_concurrently(self, method_id: str, times: int = 1) -> None:
        """Another writer changes the target (its etag moves on) right before the next call."""
        self._concurrent[method_id] = self._concurrent.get(method_id, 0) + times

    def inject_service_disabled(self, method_id: str, service: str) -> None:
        """One 403 SERVICE_DISABLED (Google's body) although the API reports enabled."""
        error = service_disabled(service, self.project_number)
        self.faults.append(Fault(method_id, 403, str(error), error.status, 1, error=error))

    def enable_all(self) -> None:
        self.state.enabled |= {*SERVICE_DISABLED_APIS.values(), "storage.googleapis.com"}

    def mutations(self) -> list[Recorded]:
        return [r for r in self.requests if r.mutating]

    def calls(self, method_id: str) -> list[Recorded]:
        return [r for r in self.requests if r.method_id == method_id]

    def resource(self, name: str) -> dict[str, Any]:
        return self.state.resources[name]

    def tag_digest(self, image: str) -> str:
        """The digest `<region>-docker.pkg.dev/<project>/<repo>/<package>:<tag>` points at."""
        version: str = self.state.resources[self._tag_name(image)]["version"]
        return version.rsplit("/", 1)[1]

    def finish_execution(self, name: str, succeeded: bool) -> None:
        """Complete an execution left running by `execution_mode = "hold"`."""
        with self._lock:
            self._complete(self.state.resources[name], succeeded)

    # ------------------------------------------------------------------ HTTP

    def serve(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: bodies may hold the (fake) token; tests read `requests`

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                answer = fake.handle(self.command, self.path, self.headers, raw)
                if answer is None:  # a reset: no answer at all
                    self.close_connection = True
                    return
                status, headers, payload = answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(
        self, method: str, target: str, headers: Any, raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        url = urllib.parse.urlsplit(target)
        path, query = url.path, dict(urllib.parse.parse_qsl(url.query))
        if path.startswith(("/storage/", "/upload/", "/download/")):
            return self._storage(method, target, path, headers, raw)
        route = match(method, path)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with self._lock:
            mutating = route.mutating if route is not None else method != "GET"
            self.requests.append(
                Recorded(method, path, route.method_id if route else "?", body, mutating)
            )
            try:
                if route is None:
                    raise ApiError(404, f"no such method: {method} {path}")
                self._require_enabled(route)
                fault = self._fault(route.method_id, route.api if mutating else None)
                if fault is not None and not fault.after:
                    self._answer_fault(fault)
                if route.request_schema and body is not None:
                    validate(route.api, route.request_schema, body)
                self._concurrent_change(route.method_id, path.lstrip("/"))
                result = self._dispatch(route, path.lstrip("/"), query, body or {})
                if fault is not None:
                    self._answer_fault(fault)  # performed, but the answer is lost
            except (InvalidBody, LoggingError) as error:
                return self._json(400, ApiError(400, str(error)).body())
            except ApiError as error:
                return self._json(error.code, error.body())
            except ConnectionReset:
                return None
        return self._json(200, result)

    @staticmethod
    def _json(code: int, payload: object) -> tuple[int, dict[str, str], bytes]:
        return code, {"Content-Type": "application/json"}, json.dumps(payload).encode()

    def _fault(self, method_id: str, mutating_api: str | None) -> Fault | None:
        """The fault this call gets, if any (the first mutation of an API, or a queued one)."""
        first = self._first_mutation
        if first is not None and mutating_api is not None and mutating_api not in self._apis_failed:
            self._apis_failed.add(mutating_api)
            return first
        for fault in self.faults:
            if fault.method_id == method_id and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _answer_fault(self, fault: Fault) -> None:
        if fault.reset:
            raise ConnectionReset
        if fault.error is not None:
            raise fault.error
        raise ApiError(fault.code, fault.message, fault.status, fault.reason)

    def _require_enabled(self, route: Route) -> None:
        self._check_enabled(SERVICE_DISABLED_APIS.get(route.api))

    def _check_enabled(self, service: str | None) -> None:
        """403 SERVICE_DISABLED while disabled, and for a few calls after being enabled."""
        if service is None:
            return
        if service not in self.state.enabled or self._propagating.get(service, 0) > 0:
            if service in self._propagating:
                self._propagating[service] -= 1
            raise service_disabled(service, self.project_number)

    def _concurrent_change(self, method_id: str, name: str) -> None:
        """Play the other writer: move the etag of the resource (or policy) being written."""
        if self._concurrent.get(method_id, 0) <= 0:
            return
        self._concurrent[method_id] -= 1
        resource = name.split("/", 1)[1].partition(":")[0]
        if resource in self.state.policies and method_id.endswith("setIamPolicy"):
            self.state.policies[resource]["etag"] = self._etag()
        elif resource in self.state.resources:
            self.state.resources[resource]["etag"] = self._etag()

    # ------------------------------------------------------------------ dispatch

    def _dispatch(
        self, route: Route, name: str, query: dict[str, str], body: dict[str, Any]
    ) -> Any:
        resource = name.split("/", 1)[1].partition(":")[0]  # drop the version and the verb
        family = route.method_id
        handlers: dict[str, Callable[[], Any]] = {
            "serviceusage.services.get": lambda: self._service_usage(resource),
            "serviceusage.services.batchEnable": lambda: self._batch_enable(body),
            "serviceusage.services.consumerQuotaMetrics.get": lambda: self._quota_metric(resource),
            "iam.projects.serviceAccounts.create": lambda: self._create_account(resource, body),
            "iam.projects.roles.create": lambda: self._create(
                f"{resource}/{body['roleId']}", body["role"]
            ),
            "secretmanager.projects.secrets.create": lambda: self._create(
                f"{resource}/{query['secretId']}", {**body, "createTime": now()}
            ),
            "secretmanager.projects.secrets.addVersion": lambda: self._add_version(resource, body),
            "secretmanager.projects.secrets.versions.get": lambda: self._version(resource),
            "secretmanager.projects.secrets.versions.access": lambda: self._access(resource),
            "artifactregistry.projects.locations.repositories.create": lambda: self._operation(
                resource.rsplit("/", 1)[0],
                self._create(f"{resource}/{query['repositoryId']}", body),
                "google.devtools.artifactregistry.v1.Repository",
                metadata_type="google.devtools.artifactregistry.v1.OperationMetadata",
            ),
            "cloudbuild.projects.locations.builds.create": lambda: self._build(resource, body),
            "cloudbuild.projects.builds.create": lambda: self._build(
                query.get("parent", resource.rsplit("/", 1)[0]), body
            ),
            "cloudbuild.projects.builds.get": lambda: self._get_build(resource.rsplit("/")[-1]),
            "cloudbuild.projects.locations.builds.get": lambda: self._get_build(
                resource.rsplit("/")[-1]
            ),
            "cloudbuild.projects.builds.list": lambda: self._list_builds(
                resource.split("/")[1], query
            ),
            "run.projects.locations.jobs.create": lambda: self._create_job(resource, query, body),
            "run.projects.locations.jobs.patch": lambda: self._update_job(resource, body),
            "run.projects.locations.jobs.run": lambda: self._run_job(resource, body),
            "run.projects.locations.jobs.executions.cancel": lambda: self._cancel(resource),
            "run.projects.locations.jobs.executions.get": lambda: self._read_execution(resource),
            "logging.entries.list": lambda: self.logs.list(body),
            "run.projects.locations.services.create": lambda: self._write_service(
                f"{resource}/{query['serviceId']}", body, creating=True
            ),
            "run.projects.locations.services.patch": lambda: self._write_service(
                resource, body, creating=False
            ),
        }
        if family in handlers:
            return handlers[family]()
        if route.action == "list":
            return self._list(resource)
        if route.action == "delete":
            return self._delete(resource, DELETED_TYPES.get(family, "google.protobuf.Empty"))
        if route.action == "getIamPolicy":
            return self._policy(resource)
        if route.action == "setIamPolicy":
            return self._set_policy(resource, body["policy"], stale=409)
        if route.action == "get" and ".operations." in family:
            return self._get_operation(resource)
        if route.action == "get":
            return self._get(resource)
        raise ApiError(501, f"the fake does not implement {family}")

    def _get(self, name: str) -> dict[str, Any]:
        if name not in self.state.resources:
            raise ApiError(404, f"Resource '{name}' was not found")
        return self.state.resources[name]

    def _create(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name in self.state.resources:
            raise ApiError(409, f"Resource '{name}' already exists")
        resource = {**body, "name": name, "etag": self._etag()}
        self.state.resources[name] = resource
        return resource

    def _list(self, collection: str) -> dict[str, Any]:
        """The direct children of a collection, under its own name (one page)."""
        depth = collection.count("/") + 1
        found = [
            r
            for n, r in self.state.resources.items()
            if n.startswith(f"{collection}/") and n.count("/") == depth and self._listed(n)
        ]
        return {collection.rsplit("/", 1)[1]: found}

    def _listed(self, name: str) -> bool:
        """False while a new resource is still missing from listings (`listing_lag`)."""
        left = self._hidden.get(name, 0)
        if left > 0:
            self._hidden[name] = left - 1
            return False
        return True

    def _delete(self, name: str, response_type: str) -> dict[str, Any]:
        deleted = self._get(name)
        for child in [n for n in self.state.resources if n == name or n.startswith(f"{name}/")]:
            del self.state.resources[child]
        response = deleted if response_type != "google.protobuf.Empty" else {}
        return self._operation(_location(name), response, response_type)

    def _etag(self) -> str:
        return base64.b64encode(f"etag-{next(self._ids)}".encode()).decode()

    def _operation(
        self,
        parent: str,
        response: dict[str, Any] | None,
        response_type: str,
        metadata: dict[str, Any] | None = None,
        metadata_type: str | None = None,
        error: ApiError | None = None,
    ) -> dict[str, Any]:
        """A long-running operation; done at once unless it has no response yet."""
        name = f"{parent}/operations/op-{next(self._ids)}".lstrip("/")
        operation: dict[str, Any] = {
            "name": name,
            "done": response is not None or error is not None,
        }
        if response is not None:
            operation["response"] = {"@type": f"type.googleapis.com/{response_type}", **response}
        if error is not None:
            operation["error"] = {"code": GRPC_CODES.get(error.code, 2), "message": str(error)}
        if metadata_type is not None:
            operation["metadata"] = {
                "@type": f"type.googleapis.com/{metadata_type}",
                **(metadata or {}),
            }
        self.state.operations[name] = operation
        return operation

    def _get_operation(self, name: str) -> dict[str, Any]:
        if name not in self.state.operations:
            raise ApiError(404, f"operation {name} not found")
        for build_id, build in list(self.state.builds.items()):
            if build.get("_operation") == name:
                self._progress(f"build:{build_id}")
        return self.state.operations[name]

    # ------------------------------------------------------------------ service usage, IAM

    def _service_usage(self, name: str) -> dict[str, Any]:
        service = name.rsplit("/", 1)[1]
        state = "ENABLED" if service in self.state.enabled else "DISABLED"
        return {"name": f"projects/{self.project_number}/services/{service}", "state": state}

    def _quota_metric(self, name: str) -> dict[str, Any]:
        """A ConsumerQuotaMetric in the FULL view: a default bucket and one per region set."""
        metric = urllib.parse.unquote(name.rsplit("/", 1)[1])
        if metric not in GPU_QUOTA_METRICS:
            raise ApiError(404, f"Metric {metric} not found for service run.googleapis.com")
        unit = "1/{project}/{region}"
        buckets = [{"effectiveLimit": str(self.gpu_quota_default), "defaultLimit": "0"}]
        buckets += [
            {"effectiveLimit": str(value), "defaultLimit": "0", "dimensions": {"region": region}}
            for (named, region), value in sorted(self.gpu_quota.items())
            if named == metric
        ]
        return {
            "name": name,
            "metric": metric,
            "displayName": GPU_QUOTA_METRICS[metric],
            "unit": unit,
            "consumerQuotaLimits": [
                {"name": f"{name}/limits/%2Fproject%2Fregion", "metric": metric, "unit": unit,
                 "isPrecise": True, "quotaBuckets": buckets}
            ],
        }  # fmt: skip

    def _batch_enable(self, body: dict[str, Any]) -> dict[str, Any]:
        for service in set(body["serviceIds"]) - self.state.enabled:
            if self.propagation_calls:
                self._propagating[service] = self.propagation_calls
        self.state.enabled |= set(body["serviceIds"])
        return self._operation(
            "",
            {"services": [{"name": s, "state": "ENABLED"} for s in body["serviceIds"]]},
            "google.api.serviceusage.v1.BatchEnableServicesResponse",
            metadata_type="google.api.serviceusage.v1.OperationMetadata",
        )

    def _create_account(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        project_id = collection.split("/")[1]
        email = f"{body['accountId']}@{project_id}.iam.gserviceaccount.com"
        account = {
            **body.get("serviceAccount", {}),
            "email": email,
            "projectId": project_id,
            "uniqueId": str(next(self._ids)),
        }
        return self._create(f"{collection}/{email}", account)

    def _policy(self, resource: str) -> dict[str, Any]:
        return self.state.policies.setdefault(resource, {"version": 1, "etag": self._etag()})

    def _set_policy(self, resource: str, policy: dict[str, Any], stale: int) -> dict[str, Any]:
        current = self._policy(resource)
        if policy.get("etag") and policy["etag"] != current["etag"]:
            status = "ABORTED" if stale == 409 else "FAILED_PRECONDITION"
            raise ApiError(stale, "There were concurrent policy changes.", status)
        stored = {**policy, "etag": self._etag()}
        self.state.policies[resource] = stored
        return stored

    # ------------------------------------------------------------------ secret manager

    def _add_version(self, secret: str, body: dict[str, Any]) -> dict[str, Any]:
        self._get(secret)
        versions = self.state.versions.setdefault(secret, [])
        version = {
            "name": f"{secret}/versions/{len(versions) + 1}",
            "state": "ENABLED",
            "createTime": now(),
        }
        versions.append({**version, "payload": body["payload"]})
        return version

    def _latest(self, name: str) -> dict[str, Any]:
        secret, _, number = name.rpartition("/versions/")
        self._get(secret)
        versions = self.state.versions.get(secret, [])
        if number == "latest":
            found = versions[-1] if versions else None
        else:
            found = next((v for v in versions if v["name"] == name), None)
        if found is None:
            raise ApiError(404, f"Secret Version [{name}] not found.")
        return found

    def _version(self, name: str) -> dict[str, Any]:
        return {k: v for k, v in self._latest(name).items() if k != "payload"}

    def _access(self, name: str) -> dict[str, Any]:
        version = self._latest(name)
        return {"name": version["name"], "payload": version["payload"]}

    # ------------------------------------------------------------------ cloud build

    def _build(self, location: str, body: dict[str, Any]) -> dict[str, Any]:
        """A build; it ends after `work_polls` reads of it (or of its operation): SUCCESS with
        pushed images, or (`builds_fail`) FAILURE, whose operation then ends with code 2
        UNKNOWN as Cloud Build's does."""
        build_id = f"build-{next(self._ids):04d}"
        build = {
            **body,
            "id": build_id,
            "name": f"{location}/builds/{build_id}",
            "projectId": location.split("/")[1],
            "status": "WORKING",
            "logUrl": f"https://console.cloud.google.com/cloud-build/builds/{build_id}",
            "createTime": now(),
        }
        self.state.builds[build_id] = build
        self._hidden[f"build:{build_id}"] = self.listing_lag
        operation = self._operation(
            location,
            None,
            "google.devtools.cloudbuild.v1.Build",
            metadata={"build": build},
            metadata_type="google.devtools.cloudbuild.v1.BuildOperationMetadata",
        )
        build["_operation"] = operation["name"]
        self._working[f"build:{build_id}"] = self.work_polls
        self._progress(f"build:{build_id}")
        return operation

    def _finish_build(self, build_id: str) -> None:
        build = self.state.builds[build_id]
        operation = self.state.operations[build.pop("_operation")]
        missing = self._missing_base_images(build)
        failed = self.builds_fail or bool(missing)
        results = []
        if not failed:
            # The tags one `docker build` step names are one image: one digest for all.
            for step in build.get("steps", []):
                args = step.get("args", [])
                digest = "sha256:" + f"{next(self._ids):064x}"
                for image in (v for k, v in itertools.pairwise(args) if k == "-t"):
                    if image in build.get("images", []):
                        results.append({"name": image, "digest": digest})
                        self._push_tag(image, digest)
        build["status"] = "FAILURE" if failed else "SUCCESS"
        build["results"] = {"images": results}
        operation["done"] = True
        operation["metadata"]["build"] = {**build}
        if failed:
            base = f" (manifest for {missing[0]} not found: manifest unknown)" if missing else ""
            build["statusDetail"] = "Build step failure: build step 0 failed"
            build["failureInfo"] = {
                "type": "USER_BUILD_STEP",
                "detail": 'Step #0: build step 0 "gcr.io/cloud-builders/docker" failed: step '
                f"exited with non-zero status: 1{base}",
            }
            operation["error"] = {
                "code": 2,
                "message": "Build failed; check build logs for details",
            }
        else:
            operation["response"] = {
                "@type": "type.googleapis.com/google.devtools.cloudbuild.v1.Build",
                **build,
            }

    def _missing_base_images(self, build: dict[str, Any]) -> list[str]:
        """`--build-arg NAME=<registry image>@sha256:…` values no pushed tag points at: docker
        cannot pull such a base, so the step fails as it does on Cloud Build."""
        wanted = [
            value.split("=", 1)[1]
            for step in build.get("steps", [])
            for flag, value in itertools.pairwise(step.get("args", []))
            if flag == "--build-arg" and "-docker.pkg.dev/" in value and "@sha256:" in value
        ]
        pushed = {
            resource["version"].rsplit("/", 1)[1]
            for name, resource in self.state.resources.items()
            if "/tags/" in name and "version" in resource
        }
        return [image for image in wanted if image.rsplit("@", 1)[1] not in pushed]

    def _progress(self, key: str) -> None:
        """One read of a running build or execution: it ends when its reads run out."""
        if key not in self._working:
            return
        self._working[key] -= 1
        if self._working[key] >= 0:
            return
        del self._working[key]
        if key.startswith("build:"):
            self._finish_build(key.removeprefix("build:"))
        else:
            self._complete(self.state.resources[key], self.execution_mode == "succeed")

    def _get_build(self, build_id: str) -> dict[str, Any]:
        if build_id not in self.state.builds:
            raise ApiError(404, f"Build {build_id} not found")
        self._progress(f"build:{build_id}")
        return {k: v for k, v in self.state.builds[build_id].items() if not k.startswith("_")}

    def _list_builds(self, project: str, query: dict[str, str]) -> dict[str, Any]:
        """Newest first, filtered on `tags="…"` (the only filter the backend uses)."""
        wanted = query.get("filter", "").removeprefix('tags="').removesuffix('"')
        found = [
            build
            for build_id, build in reversed(self.state.builds.items())
            if build["projectId"] == project
            and (not wanted or wanted in build.get("tags", []))
            and self._listed(f"build:{build_id}")
        ]
        return {"builds": found}

    @staticmethod
    def _tag_name(image: str) -> str:
        """`<region>-docker.pkg.dev/<project>/<repo>/<package>:<tag>` → its tag resource name."""
        host, project, repo, rest = image.split("/", 3)
        package, tag = rest.rsplit(":", 1)
        region = host.removesuffix("-docker.pkg.dev")
        repository = f"projects/{project}/locations/{region}/repositories/{repo}"
        return f"{repository}/packages/{package}/tags/{tag}"

    def _push_tag(self, image: str, digest: str) -> None:
        """A pushed image → its tag resource (in its package), pointing at `digest`."""
        name = self._tag_name(image)
        package = name.rsplit("/tags/", 1)[0]
        self.state.resources.setdefault(package, {"name": package})
        self.state.resources[name] = {"name": name, "version": f"{package}/versions/{digest}"}

    # ------------------------------------------------------------------ cloud run jobs

    def _create_job(
        self, collection: str, query: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        job = self._create(f"{collection}/{query['jobId']}", {**body, "generation": "1"})
        return self._operation(
            _location(collection),
            job,
            "google.cloud.run.v2.Job",
            job,
            "google.cloud.run.v2.Job",
        )

    def _update_job(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        live = self._get(name)
        if body.get("etag") and body["etag"] != live["etag"]:
            raise ApiError(409, "etag mismatch: the job changed meanwhile", "ABORTED")
        job = {
            **body,
            "name": name,
            "etag": self._etag(),
            "generation": str(int(live["generation"]) + 1),
        }
        self.state.resources[name] = job
        return self._operation(
            _location(name), job, "google.cloud.run.v2.Job", job, "google.cloud.run.v2.Job"
        )

    def _run_job(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        job = self._get(name)
        task = json.loads(json.dumps(job["template"]["template"]))
        overrides = body.get("overrides", {})
        for override in overrides.get("containerOverrides", []):
            container = next(
                (c for c in task["containers"] if c.get("name") == override.get("name")),
                task["containers"][0],
            )
            if "args" in override:
                container["args"] = override["args"]
            if "env" in override:
                names = {variable["name"] for variable in override["env"]}
                kept = [v for v in container.get("env", []) if v["name"] not in names]
                container["env"] = kept + override["env"]
        if "timeout" in overrides:
            task["timeout"] = overrides["timeout"]
        execution_id = f"{name.rsplit('/', 1)[1]}-{next(self._ids):05d}"
        execution = {
            "name": f"{name}/executions/{execution_id}",
            "job": name.rsplit("/", 1)[1],
            "template": task,
            "taskCount": overrides.get("taskCount", 1),
            "createTime": now(),
            "startTime": now(),
            "runningCount": 1,
            "logUri": f"https://console.cloud.google.com/logs/viewer?execution={execution_id}",
            "etag": self._etag(),
        }
        self.state.resources[execution["name"]] = execution
        self._hidden[execution["name"]] = self.listing_lag
        self.logs.started(execution["name"])
        if self.execution_mode != "hold":
            self._working[execution["name"]] = self.work_polls
            self._progress(execution["name"])
        return self._operation(
            _location(name), None, "", execution, "google.cloud.run.v2.Execution"
        )

    def _complete(self, execution: dict[str, Any], succeeded: bool) -> None:
        if succeeded and self.on_execution is not None:
            self.on_execution(execution["template"]["containers"][0].get("args", []))
        self.logs.ended(execution["name"])
        outcome = "succeededCount" if succeeded else "failedCount"
        execution.update(
            {
                "runningCount": 0,
                outcome: 1,
                "completionTime": self._completion_time(execution),
                "conditions": [
                    {
                        "type": "Completed",
                        "state": "CONDITION_SUCCEEDED" if succeeded else "CONDITION_FAILED",
                        "message": ""
                        if succeeded
                        else GPU_QUOTA_MESSAGE
                        if self.execution_mode == "quota"
                        else "Task failed: the container exited with code 1",
                    }
                ],
            }
        )

    def _completion_time(self, execution: dict[str, Any]) -> str:
        if self.execution_seconds is None:
            return now()
        started = calendar.timegm(time.strptime(execution["startTime"], TIME_FORMAT))
        return time.strftime(TIME_FORMAT, time.gmtime(started + self.execution_seconds))

    def _read_execution(self, name: str) -> dict[str, Any]:
        execution = self._get(name)
        if not execution.get("completionTime"):
            self.logs.running(name)
        self._progress(name)
        return execution

    def _cancel(self, name: str) -> dict[str, Any]:
        execution = self._get(name)
        self._working.pop(name, None)
        execution.update({"runningCount": 0, "cancelledCount": 1, "completionTime": now()})
        return self._operation(
            _location(name),
            execution,
            "google.cloud.run.v2.Execution",
            execution,
            "google.cloud.run.v2.Execution",
        )

    # ------------------------------------------------------------------ cloud run services

    def _write_service(self, name: str, body: dict[str, Any], creating: bool) -> dict[str, Any]:
        live = None if creating else self._get(name)
        if creating and name in self.state.resources:
            raise ApiError(409, f"Resource '{name}' already exists")
        if live is not None and body.get("etag") and body["etag"] != live["etag"]:
            raise ApiError(409, "etag mismatch: the service changed meanwhile", "ABORTED")
        service_id = name.rsplit("/", 1)[1]
        template = body["template"]
        revision = template.get("revision") or f"{service_id}-{next(self._ids):05d}"
        revision_name = f"{name}/revisions/{revision}"
        existing = self.state.resources.get(revision_name)
        if existing is not None and existing["template"] != template:
            raise ApiError(
                409, f"Revision named '{revision}' with different configuration already exists."
            )
        traffic = body.get("traffic") or [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}
        ]
        self._check_traffic(name, traffic, revision)
        error = None
        if existing is None:
            ready = not self.revisions_fail
            self.state.resources[revision_name] = {
                "name": revision_name,
                "service": service_id,
                "template": template,
                "logUri": f"https://console.cloud.google.com/logs/viewer?revision={revision}",
                "conditions": [
                    {
                        "type": "Ready",
                        "state": "CONDITION_SUCCEEDED" if ready else "CONDITION_FAILED",
                        "message": "" if ready else REVISION_FAILURE,
                    }
                ],
            }
            if not ready:
                error = ApiError(
                    400,
                    f"Revision '{revision}' is not ready and cannot serve traffic. "
                    + REVISION_FAILURE,
                    "FAILED_PRECONDITION",
                )
        service = {
            **body,
            "name": name,
            "uri": self.service_url,
            "etag": self._etag(),
            "latestCreatedRevision": revision_name,
            "latestReadyRevision": revision_name
            if error is None
            else (live or {}).get("latestReadyRevision", ""),
            "traffic": traffic if error is None else (live or {}).get("traffic", []),
        }
        service["trafficStatuses"] = [
            {**target, "uri": self.url_for_tag(target["tag"])} if target.get("tag") else target
            for target in service["traffic"]
        ]
        if error is None or live is None:
            self.state.resources[name] = service
        return self._operation(
            _location(name),
            None if error else service,
            "google.cloud.run.v2.Service",
            service,
            "google.cloud.run.v2.Service",
            error=error,
        )

    def _check_traffic(
        self, service: str, traffic: list[dict[str, Any]], new_revision: str
    ) -> None:
        if sum(int(t.get("percent", 0)) for t in traffic) != 100:
            raise ApiError(400, "Traffic targets must add up to 100 percent.")
        for target in traffic:
            revision = target.get("revision")
            if (
                revision
                and revision != new_revision
                and f"{service}/revisions/{revision}" not in self.state.resources
            ):
                raise ApiError(400, f"Revision '{revision}' referenced in traffic not found.")

    # ------------------------------------------------------------------ storage (proxy)

    def _storage(
        self, method: str, target: str, path: str, headers: Any, raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Bucket metadata and IAM here; objects in the real emulator."""
        parts = path.strip("/").split("/")
        with self._lock:
            self.requests.append(Recorded(method, path, f"storage:{method}", None, method != "GET"))
            try:
                self._check_enabled("storage.googleapis.com")
                fault = self._fault(f"storage:{method}", "storage" if method != "GET" else None)
                if fault is not None:  # storage faults always answer before performing
                    self._answer_fault(fault)
            except ApiError as error:
                return self._json(error.code, error.body())
            except ConnectionReset:
                return None
            if parts[:3] == ["storage", "v1", "b"] and len(parts) == 5 and parts[4] == "iam":
                return self._bucket_policy(parts[3], method, raw)
            if parts == ["storage", "v1", "b"] and method == "POST":
                body = json.loads(raw)
                try:
                    validate("storage.v1", "Bucket", body)
                except InvalidBody as error:
                    return self._json(400, ApiError(400, str(error)).body())
                meta = {k: body[k] for k in ("location", "iamConfiguration") if k in body}
                meta["location"] = meta.get("location", "US").upper()
                status, out_headers, payload = self._forward(method, target, headers, raw)
                if status == 200:
                    self.state.buckets[body["name"]] = meta
                return status, out_headers, payload
        status, out_headers, payload = self._forward(method, target, headers, raw)
        if (
            parts[:3] == ["storage", "v1", "b"]
            and len(parts) == 4
            and method == "GET"
            and status == 200
        ):
            bucket = json.loads(payload) | self.state.buckets.get(parts[3], {})
            return self._json(200, bucket)
        return status, out_headers, payload

    def _bucket_policy(
        self, bucket: str, method: str, raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if bucket not in self.state.buckets:
            return self._json(404, ApiError(404, "The specified bucket does not exist.").body())
        resource = f"storage/buckets/{bucket}"
        if method == "GET":
            return self._json(
                200, {"kind": "storage#policy", "bindings": [], **self._policy(resource)}
            )
        try:
            return self._json(200, self._set_policy(resource, json.loads(raw), stale=412))
        except ApiError as error:
            return self._json(error.code, error.body())

    def _forward(
        self, method: str, target: str, headers: Any, raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.gcs.hostname, self.gcs.port, timeout=60)
        dropped = {"host", "content-length", "connection", "accept-encoding"}
        keep = {k: v for k, v in headers.items() if k.lower() not in dropped}
        connection.request(method, target, body=raw or None, headers=keep)
        response = connection.getresponse()
        payload = response.read()
        passed = {
            k: v
            for k, v in response.getheaders()
            if k.lower() not in {"content-length", "transfer-encoding", "connection"}
        }
        connection.close()
        return response.status, passed, payload


def _location(name: str) -> str:
    """`projects/p/locations/r` of any resource name below it."""
    return "/".join(name.split("/")[:4])
