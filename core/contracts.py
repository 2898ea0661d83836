"""The contract every backend fulfils: protocols, frozen result types and typed errors.

The flow only talks to these protocols, so the same six steps run on a laptop (`local`)
and on Google Cloud (`gcp`). Results are small frozen dataclasses because Prefect persists
them as task results: they must be cheap to pickle and must never hold a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from core.cost import Usage

# --------------------------------------------------------------------------- errors


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose (message is user-facing)."""


class TransientError(PipelineError):
    """A failure that may succeed on retry (429, 5xx, a dropped connection)."""


class ConfigurationError(PipelineError):
    """Settings or inputs are wrong; retrying cannot help. The message names the fix."""


class TrainingFailed(PipelineError):
    """The training job ran and failed (non-zero exit, or no complete model written)."""


class DeadlineExceeded(PipelineError):
    """A wait ran past the deadline taken from settings."""


class VerificationFailed(PipelineError):
    """The model folder is incomplete or corrupt; it must never be served."""

    def __init__(self, location: str, problems: list[str]) -> None:
        self.location = location
        self.problems = problems
        listed = "; ".join(problems)
        super().__init__(f"model at {location} failed verification: {listed}")


class DeployFailed(PipelineError):
    """The model server did not come up healthy before its deadline."""


class SmokeTestFailed(PipelineError):
    """The served endpoint answered, but not with what a working model returns."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ProvisionReport:
    """What provisioning found: the store's address and what this run had to create."""

    store_uri: str
    created: tuple[str, ...]


@dataclass(frozen=True)
class ImageRef:
    """The training code, addressed by content: same `job_image/` → same `content_hash`.

    `uri` is what the runner starts (a snapshot folder, or `repo@sha256:…` on Artifact
    Registry); `content_hash` is the sha256 of `job_image/` that the lineage key records.
    """

    uri: str
    content_hash: str


@dataclass(frozen=True)
class TrainJobSpec:
    """Everything the training job needs; `output_prefix` is relative to the store root."""

    lineage_key: str
    output_prefix: str
    args: tuple[str, ...]
    deadline_s: float


@dataclass(frozen=True)
class JobOutcome:
    """How one training job ended; `reused` means a complete model already existed.

    `usage` is what the run's cloud job was billed for (None locally, or when nothing ran).
    """

    lineage_key: str
    output_uri: str
    execution: str
    duration_s: float
    reused: bool
    usage: Usage | None = None


@dataclass(frozen=True)
class GpuQuota:
    """The GPU quota a run draws on, read before anything is built or trained.

    `limit` is the region's effective limit (-1 = unlimited), or None when it could not be
    read (`detail` says why: no permission, API disabled, timeout) — then the run goes on, as
    the quota only decides whether Cloud Run will schedule the GPU later. `fix` says how to get
    more (where to request it, which other regions to try).
    """

    name: str
    region: str
    limit: int | None
    detail: str = ""
    fix: str = ""

    def verdict(self) -> tuple[bool | None, str]:
        """(True: enough, False: 0 — stop now, None: unknown) and the one line to log or raise."""
        where = f"GPU quota {self.name} in region {self.region}"
        if self.limit is None:
            return None, f"{where}: could not be read ({self.detail}); going on without it"
        if self.limit == 0:
            return False, f"{where} is 0: Cloud Run cannot start a GPU there; {self.fix}"
        shown = "unlimited" if self.limit < 0 else str(self.limit)
        return True, f"{where}: {shown}"


@dataclass(frozen=True)
class Endpoint:
    """A running OpenAI-compatible server; `model` is what requests put in `model`.

    `server_id` is the backend's name for the running server: the process-group id locally,
    the Cloud Run revision name on gcp.
    """

    base_url: str
    model: str
    engine: str
    server_id: str


@dataclass(frozen=True)
class Progress:
    """One progress report from a long step (training steps, bytes uploaded…)."""

    done: float
    total: float
    message: str = ""


ProgressCallback = Callable[[Progress], None]
LogCallback = Callable[[str], None]


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class ArtifactStore(Protocol):
    """Where immutable model versions live: `models/<lineage-key>/…` under one root."""

    @property
    def root_uri(self) -> str: ...

    def uri_for(self, prefix: str) -> str:
        """Human-readable address of a prefix, for logs and the report."""
        ...

    def list_files(self, prefix: str) -> dict[str, int]:
        """Relative name → size in bytes of every file under `prefix` ({} if none)."""
        ...

    def read_bytes(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        """Bytes of one file (a range when `length` is given). Raises FileNotFoundError."""
        ...

    def iter_chunks(self, path: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        """Stream a whole file, for hashing files larger than memory."""
        ...

    def local_dir(self, prefix: str) -> Path | None:
        """A local folder holding `prefix`, when the store is a folder (None otherwise)."""
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or replace one small file (a marker such as REJECTED.json), whole or not at
        all. Weights are never written through this: the training job writes those."""
        ...


@runtime_checkable
class Provisioner(Protocol):
    """Creates what the other parts need (store, accounts, secrets, registries); idempotent."""

    def is_ready(self) -> bool:
        """True when `ensure` has nothing left to do (a cheap world check for the cache)."""
        ...

    def ensure(self, on_log: LogCallback) -> ProvisionReport:
        """get → create if absent → re-get, for every resource; a second call creates nothing."""
        ...

    def gpu_quota(self) -> GpuQuota | None:
        """The GPU quota the job and the service draw on, read only (never raises for an
        unreadable quota: `limit` is None then); None when the backend has no such quota."""
        ...


@runtime_checkable
class ImageBuilder(Protocol):
    """Turns `job_image/` into something the job runner can start."""

    def image_for(self, context_dir: Path) -> ImageRef:
        """The image that `context_dir` would produce (without building it)."""
        ...

    def find(self, image: ImageRef) -> ImageRef | None:
        """The built image for `image`'s content hash, as the runner starts it (pinned to
        the registry digest on gcp); None when it has not been built."""
        ...

    def build(self, context_dir: Path, on_log: LogCallback) -> ImageRef:
        """Build (or reuse) the image for `context_dir`; idempotent by content hash."""
        ...


@runtime_checkable
class JobRunner(Protocol):
    """Runs the training job to completion, with a deadline."""

    def run(
        self,
        image: ImageRef,
        spec: TrainJobSpec,
        on_log: LogCallback,
        on_progress: ProgressCallback,
    ) -> JobOutcome: ...


@runtime_checkable
class ModelServer(Protocol):
    """Serves a verified model folder behind `/v1/chat/completions`."""

    def deploy(self, model_prefix: str, served_model_name: str, deadline_s: float) -> Endpoint:
        """Start a *candidate* server; the current one keeps serving until `promote`."""
        ...

    def promote(self, endpoint: Endpoint) -> None:
        """Make the candidate the live server and retire the previous one."""
        ...

    def discard(self, endpoint: Endpoint) -> str:
        """Stop a candidate that failed its checks; the previous one keeps serving. Returns
        one line saying what is left serving, for the run log."""
        ...

    def release(self, endpoint: Endpoint) -> None:
        """Stop a live server at the end of a run that was not asked to keep serving."""
        ...

    def how_to_stop(self, endpoint: Endpoint) -> str:
        """One sentence telling an operator how to stop a kept server."""
        ...

    def request_headers(self, endpoint: Endpoint) -> Mapping[str, str]:
        """Headers a client needs (an identity token on Cloud Run); fetched when used, so no
        credential is ever stored in a task result."""
        ...


@runtime_checkable
class Teardown(Protocol):
    """Stops what costs money and, only when asked, deletes what runs created."""

    def stop_serving(self, on_log: LogCallback) -> bool:
        """Stop the live server (local process / Cloud Run service); False if none ran."""
        ...

    def delete_job(self, on_log: LogCallback) -> bool:
        """Delete the training job definition; False if there was none."""
        ...

    def delete_images(self, on_log: LogCallback) -> int:
        """Delete the training images; returns how many were deleted."""
        ...

    def delete_models(self, on_log: LogCallback) -> int:
        """Delete every trained model version; returns how many were deleted."""
        ...


@dataclass(frozen=True)
class Backend:
    """The four parts one backend provides; `wiring.build_backend` picks the implementation."""

    name: str
    provisioner: Provisioner
    store: ArtifactStore
    builder: ImageBuilder
    runner: JobRunner
    server: ModelServer
    teardown: Teardown


@runtime_checkable
class ServingLookup(Protocol):
    """Which model versions serve now; reads only (`models list`, rollback, plan)."""

    def serving(self) -> dict[str, str]:
        """Lineage key → where it serves ("100% of service S, revision R"); {} when none."""
        ...


@dataclass(frozen=True)
class ResourceState:
    """One resource a run needs, as plan mode found it: `exists` is None when it could not
    be read (e.g. its API is not enabled yet), which a plan treats as "would be created"."""

    kind: str
    name: str
    exists: bool | None
    detail: str = ""


@runtime_checkable
class Inventory(Protocol):
    """What of a backend's infrastructure exists already; reads only (plan mode)."""

    def resources(self) -> list[ResourceState]: ...
