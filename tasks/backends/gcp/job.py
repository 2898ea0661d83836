"""`JobRunner` on a Cloud Run job with one L4: create-or-update the job, run, wait, check.

While it waits, the execution's log lines stream from Cloud Logging into the run's logs and
its PROGRESS lines drive the progress artifact (joblogs.py); until the first PROGRESS line, or
without access to the logs, progress is the elapsed share of the wait.

Starting an execution is not idempotent, so before starting one the runner lists the job's
running executions and attaches to one already training the same lineage key (its arguments
carry `--lineage-key`). Local files the job is given (a local base model or dataset) are staged
into the bucket under `inputs/<content-hash>/` first: the job runs elsewhere and sees the
bucket as `/mnt/store`.

`jobs:run` is not idempotent either: it can start an execution while the client sees a 5xx or
a reset. Each start carries a unique attempt id (an environment override, `PIPELINE_ATTEMPT_ID`,
visible in the execution's template); before starting again the runner looks for it in the
job's executions (for `gcp.listing_settle_s`: listings lag) and adopts what it finds.

The spec's deadline bounds one *attempt* (the task timeout Cloud Run enforces); Cloud Run
retries a failed task up to `gcp.max_retries` times, so the wait covers all `max_retries + 1`
attempts. Past it — or when the run is interrupted (a cancelled Prefect flow run delivers
SIGTERM, Ctrl-C a KeyboardInterrupt) — the execution is cancelled, so an abandoned GPU never
keeps billing.
"""

from __future__ import annotations

import contextlib
import time
import uuid
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
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.errors import is_quota_text, quota_exceeded
from tasks.backends.gcp.joblogs import ExecutionLogs
from tasks.backends.gcp.specs import ATTEMPT_ENV, as_dict, covers, job_spec, run_overrides
from tasks.backends.gcp.store import GcsStore
from tasks.backends.gcp.usage import execution_usage
from tasks.backends.sealed_models import reuse_sealed_model, sealed_lineage_key

INPUTS_PREFIX = "inputs"
INPUT_HASH_CHARS = 16
OPERATION_TIMEOUT_S = 300.0
LINEAGE_FLAG = "--lineage-key"


def execution_attempt(execution: run_v2.Execution) -> str | None:
    """The attempt id a start gave its execution (an env override on the trainer)."""
    for container in execution.template.containers:
        for variable in container.env:
            if variable.name == ATTEMPT_ENV:
                return str(variable.value)
    return None


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
        self,
        clients: GoogleClients,
        names: GcpNames,
        store: GcsStore,
        settings: GcpSettings,
        calls: GoogleCalls,
    ) -> None:
        self.clients = clients
        self.names = names
        self.store = store
        self.settings = settings
        self.calls = calls

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
            execution = self.start(args, spec.deadline_s, on_log)
        finished = self.wait(execution, self.wait_budget_s(spec), on_log, on_progress)
        duration = time.monotonic() - started
        if finished.succeeded_count < 1:
            reason = "; ".join(c.message for c in finished.conditions if c.message) or "no detail"
            if is_quota_text(reason):  # the GPU was refused when the task was scheduled
                raise quota_exceeded(
                    self.names, f"training execution {finished.name} got no GPU", reason
                )
            raise TrainingFailed(
                f"training execution {finished.name} failed ({reason}); logs: {finished.log_uri}"
            )
        if sealed_lineage_key(self.store, spec.output_prefix) != spec.lineage_key:
            raise TrainingFailed(
                f"execution {finished.name} succeeded but wrote no complete model "
                f"(MANIFEST.json) at {output_uri}; logs: {finished.log_uri}"
            )
        usage = execution_usage(finished, self.settings)
        return JobOutcome(
            spec.lineage_key, output_uri, finished.name, duration, reused=False, usage=usage
        )

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
        """Create the job, or update it when its template differs from what we want.

        Converging: a 409 (another run created it, or changed it since our read) re-reads
        and decides again.
        """
        desired = job_spec(self.settings, self.names, image.uri)
        jobs = self.clients.jobs

        def converge() -> str | None:
            try:
                live = jobs.get_job(name=self.names.job)
            except gexc.NotFound:
                live = None
            if live is not None and covers(as_dict(live), as_dict(desired)):
                return None
            if live is None:
                operation = jobs.create_job(
                    parent=self.names.location, job=desired, job_id=self.names.job_id
                )
            else:
                operation = jobs.update_job(
                    job=run_v2.Job(desired, name=self.names.job, etag=live.etag)
                )
            operation.result(timeout=OPERATION_TIMEOUT_S)
            return "created" if live is None else "updated"

        done = self.calls.call(
            "create or update", f"job {self.names.job_id}", converge, converge=True, on_log=on_log
        )
        if done is not None:
            on_log(f"job {self.names.job_id}: {done} for image {image.uri}")

    def running_execution(self, lineage_key: str) -> str | None:
        """An unfinished execution of this job for `lineage_key`, if one exists."""

        def find() -> str | None:
            for execution in self.clients.executions.list_executions(parent=self.names.job):
                if (
                    not execution.completion_time
                    and execution_lineage_key(execution) == lineage_key
                ):
                    return str(execution.name)
            return None

        return self.calls.call("list", f"executions of {self.names.job_id}", find)

    def start(self, args: Sequence[str], deadline_s: float, on_log: LogCallback) -> str:
        """Start one execution, exactly once: a start whose answer was lost is found and
        adopted (by its attempt id) instead of being started again."""
        attempt = uuid.uuid4().hex
        request = run_v2.RunJobRequest(
            name=self.names.job, overrides=run_overrides(args, deadline_s, attempt)
        )
        return self.calls.call(
            "run",
            f"job {self.names.job_id}",
            lambda: str(self.clients.jobs.run_job(request=request).metadata.name),
            adopt=lambda: self._started_by(attempt),
            on_log=on_log,
        )

    def _started_by(self, attempt: str) -> str | None:
        def find() -> str | None:
            executions = self.clients.executions.list_executions(parent=self.names.job)
            return next((str(e.name) for e in executions if execution_attempt(e) == attempt), None)

        return self.calls.poll(
            f"executions of {self.names.job_id}", find, self.settings.listing_settle_s
        )

    def wait_budget_s(self, spec: TrainJobSpec) -> float:
        """Every attempt Cloud Run may make: the task timeout bounds one, and it retries a
        failed task `max_retries` times."""
        return spec.deadline_s * (self.settings.max_retries + 1)

    def wait(
        self,
        execution: str,
        deadline_s: float,
        on_log: LogCallback,
        on_progress: ProgressCallback,
    ) -> run_v2.Execution:
        """Poll until the execution completes; cancel it past the deadline or when the run is
        interrupted (SIGTERM from a cancelled flow run, Ctrl-C), then re-raise."""
        try:
            return self._poll(execution, deadline_s, on_log, on_progress)
        except BaseException as error:
            # Prefect's TerminationSignal, KeyboardInterrupt, SystemExit: not failures of the
            # execution, but the end of whoever waits on it.
            if not isinstance(error, Exception):
                self.cancel(execution, on_log)
            raise

    def _poll(
        self,
        execution: str,
        deadline_s: float,
        on_log: LogCallback,
        on_progress: ProgressCallback,
    ) -> run_v2.Execution:
        deadline = time.monotonic() + deadline_s
        started = time.monotonic()
        logs: ExecutionLogs | None = None
        while True:
            current = self.calls.call(
                "read",
                f"execution {execution}",
                lambda: self.clients.executions.get_execution(name=execution),
            )
            if logs is None:
                on_log(f"training execution {execution}; logs: {current.log_uri or 'none yet'}")
                logs = self._follow_logs(current, on_log, on_progress)
            logs.poll()
            if current.completion_time:
                self._read_tail(logs)
                return current
            if not logs.progressed:  # no PROGRESS line (yet, or no logs): elapsed time
                elapsed = time.monotonic() - started
                running = f"{current.running_count} task(s) running"
                on_progress(Progress(elapsed, deadline_s, running))
            if time.monotonic() > deadline:
                self.cancel(execution, on_log)
                raise DeadlineExceeded(
                    f"training execution {execution} ran past its {deadline_s:.0f} s deadline "
                    f"({self.settings.max_retries + 1} attempt(s) × --train-timeout) and was "
                    f"cancelled (raise --train-timeout, max 3600); logs: {current.log_uri}"
                )
            time.sleep(self.settings.poll_interval_s)

    def _follow_logs(
        self, execution: run_v2.Execution, on_log: LogCallback, on_progress: ProgressCallback
    ) -> ExecutionLogs:
        """The execution's Cloud Logging lines, from its creation on (a joined execution's
        earlier lines too)."""
        created = execution.create_time
        return ExecutionLogs(
            self.clients,
            self.names.job_id,
            str(execution.name),
            created.rfc3339() if created else None,
            on_log,
            on_progress,
        )

    def _read_tail(self, logs: ExecutionLogs) -> None:
        """Logging lags the job: its last lines show up after the execution has ended."""
        until = time.monotonic() + self.settings.log_tail_s
        while logs.available and time.monotonic() < until:
            time.sleep(min(self.settings.poll_interval_s, self.settings.log_tail_s))
            logs.poll()

    def cancel(self, execution: str, on_log: LogCallback) -> None:
        """Stop the execution (and its GPU); one that finished meanwhile is left as it is."""

        def cancel() -> None:
            with contextlib.suppress(gexc.FailedPrecondition):  # finished meanwhile
                self.clients.executions.cancel_execution(name=execution)

        self.calls.call("cancel", f"execution {execution}", cancel, on_log=on_log)
        on_log(f"cancelled training execution {execution}")
