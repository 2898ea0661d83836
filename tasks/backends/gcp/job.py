"""`JobRunner` on a Cloud Run job with one L4: create-or-update the job, run, wait, check.

Starting an execution is not idempotent, so before starting one the runner lists the job's
running executions and attaches to one already training the same lineage key (its arguments
carry `--lineage-key`). Local files the job is given (a local base model or dataset) are staged
into the bucket under `inputs/<content-hash>/` first: the job runs elsewhere and sees the
bucket as `/mnt/store`. The wait has the spec's deadline; past it the execution is cancelled,
so an abandoned GPU never keeps billing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud import run_v2

from core.contracts import (
    DeadlineExceeded,
    ImageRef,
    JobOutcome,
    LogCallback,
    Progress,
    ProgressCallback,
    TrainingFailed,
    TrainJobSpec,
)
from core.hashing import sha256_file, sha256_tree, tree_files
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.errors import google_call
from tasks.backends.gcp.specs import as_dict, covers, job_spec, run_overrides
from tasks.backends.gcp.store import GcsStore
from tasks.backends.sealed_models import reuse_sealed_model, sealed_lineage_key

INPUTS_PREFIX = "inputs"
INPUT_HASH_CHARS = 16
OPERATION_TIMEOUT_S = 300.0
LINEAGE_FLAG = "--lineage-key"


def execution_lineage_key(execution: run_v2.Execution) -> str | None:
    """The `--lineage-key` an execution was started with (overrides show in its template)."""
    for container in execution.template.containers:
        args = list(container.args)
        if LINEAGE_FLAG in args[:-1]:
            return args[args.index(LINEAGE_FLAG) + 1]
    return None


class CloudRunJobRunner:
    """Trains on a Cloud Run job; one job, one execution per lineage key at a time."""

    def __init__(
        self, clients: GoogleClients, names: GcpNames, store: GcsStore, settings: GcpSettings
    ) -> None:
        self.clients = clients
        self.names = names
        self.store = store
        self.settings = settings

    def run(
        self,
        image: ImageRef,
        spec: TrainJobSpec,
        on_log: LogCallback,
        on_progress: ProgressCallback,
    ) -> JobOutcome:
        existing = reuse_sealed_model(self.store, spec, on_log)
        if existing is not None:
            return existing
        output_uri = self.store.uri_for(spec.output_prefix)

        args = [
            *self.stage_inputs(spec.args, on_log),
            "--output-dir",
            self.store.mounted_path(spec.output_prefix),
        ]
        self.ensure_job(image, on_log)
        started = time.monotonic()
        execution = self.running_execution(spec.lineage_key)
        if execution is not None:
            on_log(f"execution {execution} is already training {spec.lineage_key}; waiting on it")
        elif sealed_lineage_key(self.store, spec.output_prefix) == spec.lineage_key:
            on_log(f"another run finished {output_uri} meanwhile; nothing to train")
            return JobOutcome(spec.lineage_key, output_uri, "existing", 0.0, reused=True)
        else:
            execution = self.start(args, spec.deadline_s)
        finished = self.wait(execution, spec.deadline_s, on_log, on_progress)
        duration = time.monotonic() - started
        if finished.succeeded_count < 1:
            reason = "; ".join(c.message for c in finished.conditions if c.message) or "no detail"
            raise TrainingFailed(
                f"training execution {finished.name} failed ({reason}); logs: {finished.log_uri}"
            )
        if sealed_lineage_key(self.store, spec.output_prefix) != spec.lineage_key:
            raise TrainingFailed(
                f"execution {finished.name} succeeded but wrote no complete model "
                f"(MANIFEST.json) at {output_uri}; logs: {finished.log_uri}"
            )
        return JobOutcome(spec.lineage_key, output_uri, finished.name, duration, reused=False)

    # ------------------------------------------------------------------ inputs

    def stage_inputs(self, args: Sequence[str], on_log: LogCallback) -> list[str]:
        """Replace each local path argument by its copy in the bucket, as the job sees it."""
        staged = []
        for arg in args:
            path = Path(arg)
            if path.is_absolute() and path.exists():
                staged.append(self.store.mounted_path(self._upload_input(path, on_log)))
            else:
                staged.append(arg)
        return staged

    def _upload_input(self, path: Path, on_log: LogCallback) -> str:
        """Content-addressed, so an input already in the bucket is never uploaded again."""
        if path.is_dir():
            folder = f"{INPUTS_PREFIX}/{sha256_tree(path)[:INPUT_HASH_CHARS]}"
            files = {source.relative_to(path).as_posix(): source for source in tree_files(path)}
            target = folder
        else:
            folder = f"{INPUTS_PREFIX}/{sha256_file(path)[:INPUT_HASH_CHARS]}"
            files = {path.name: path}
            target = f"{folder}/{path.name}"
        present = self.store.list_files(folder)
        missing = {name: source for name, source in files.items() if name not in present}
        for name, source in missing.items():
            self.store.upload_file(f"{folder}/{name}", source)
        state = f"uploaded {len(missing)} file(s)" if missing else "present"
        on_log(f"input {path} → {self.store.uri_for(target)}: {state}")
        return target

    # ------------------------------------------------------------------ job

    def ensure_job(self, image: ImageRef, on_log: LogCallback) -> None:
        """Create the job, or update it when its template differs from what we want."""
        desired = job_spec(self.settings, self.names, image.uri)
        jobs = self.clients.jobs
        with google_call(self.names, "read", f"job {self.names.job_id}"):
            try:
                live = jobs.get_job(name=self.names.job)
            except gexc.NotFound:
                live = None
        action = "create" if live is None else "update"
        if live is not None and covers(as_dict(live), as_dict(desired)):
            return
        with google_call(self.names, action, f"job {self.names.job_id}"):
            if live is None:
                operation = jobs.create_job(
                    parent=self.names.location, job=desired, job_id=self.names.job_id
                )
            else:
                desired.name = self.names.job
                desired.etag = live.etag
                operation = jobs.update_job(job=desired)
            operation.result(timeout=OPERATION_TIMEOUT_S)
        on_log(f"job {self.names.job_id}: {action}d for image {image.uri}")

    def running_execution(self, lineage_key: str) -> str | None:
        """An unfinished execution of this job for `lineage_key`, if one exists."""
        with google_call(self.names, "list", f"executions of {self.names.job_id}"):
            for execution in self.clients.executions.list_executions(parent=self.names.job):
                if (
                    not execution.completion_time
                    and execution_lineage_key(execution) == lineage_key
                ):
                    return execution.name
        return None

    def start(self, args: Sequence[str], deadline_s: float) -> str:
        request = run_v2.RunJobRequest(
            name=self.names.job, overrides=run_overrides(args, deadline_s)
        )
        with google_call(self.names, "run", f"job {self.names.job_id}"):
            operation = self.clients.jobs.run_job(request=request)
            return str(operation.metadata.name)

    def wait(
        self,
        execution: str,
        deadline_s: float,
        on_log: LogCallback,
        on_progress: ProgressCallback,
    ) -> run_v2.Execution:
        """Poll until the execution completes; cancel it and fail past the deadline."""
        deadline = time.monotonic() + deadline_s
        started = time.monotonic()
        logged = False
        while True:
            with google_call(self.names, "read", f"execution {execution}"):
                current = self.clients.executions.get_execution(name=execution)
            if not logged and current.log_uri:
                on_log(f"training execution {execution}; logs: {current.log_uri}")
                logged = True
            if current.completion_time:
                return current
            elapsed = time.monotonic() - started
            on_progress(Progress(elapsed, deadline_s, f"{current.running_count} task(s) running"))
            if time.monotonic() > deadline:
                self._cancel(execution)
                raise DeadlineExceeded(
                    f"training execution {execution} ran past its {deadline_s:.0f} s deadline and "
                    f"was cancelled (raise --train-timeout, max 3600); logs: {current.log_uri}"
                )
            time.sleep(self.settings.poll_interval_s)

    def _cancel(self, execution: str) -> None:
        with (
            google_call(self.names, "cancel", f"execution {execution}"),
            contextlib.suppress(gexc.FailedPrecondition),  # finished meanwhile
        ):
            self.clients.executions.cancel_execution(name=execution)
