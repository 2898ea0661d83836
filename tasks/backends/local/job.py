"""The training job as a local subprocess running `job_image/finetune.py`.

It keeps the Cloud Run job's semantics: one execution per lineage key at a time (a lock
file holding the pid), a deadline, streamed logs, and "a complete model already in the store
means there is nothing to run" — checked against the folder, not a cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from core.contracts import (
    ConfigurationError,
    ImageRef,
    JobOutcome,
    LogCallback,
    ProgressCallback,
    TrainingFailed,
    TrainJobSpec,
    TransientError,
)
from tasks.backends.local.processes import pid_alive, run_streaming
from tasks.backends.local.store import LocalFolderStore
from tasks.backends.sealed_models import reuse_sealed_model, sealed_lineage_key

TRAIN_SCRIPT = "finetune.py"
BAD_INPUT_EXIT_CODE = 2


class LocalJobRunner:
    """`JobRunner` that runs the training script with this interpreter."""

    def __init__(self, store: LocalFolderStore, python: str = sys.executable) -> None:
        self.store = store
        self.python = python

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

        script = Path(image.uri) / TRAIN_SCRIPT
        output_dir = self.store.path(spec.output_prefix)
        command = [self.python, str(script), *spec.args, "--output-dir", str(output_dir)]
        started = time.monotonic()
        with self._execution_lock(spec.lineage_key) as execution:
            on_log(f"training execution {execution} started: {script.name} → {output_uri}")
            code, tail = run_streaming(
                command,
                deadline_s=spec.deadline_s,
                on_log=on_log,
                on_progress=on_progress,
                env={"PYTHONUNBUFFERED": "1"},
            )
        duration = time.monotonic() - started
        last_lines = "\n".join(tail[-15:])
        if code == BAD_INPUT_EXIT_CODE:
            reason = next((line for line in reversed(tail) if line.startswith("error:")), None)
            # The job's line already says `error: …`; the CLI adds its own prefix.
            raise ConfigurationError(
                reason.removeprefix("error:").strip()
                if reason
                else f"training rejected its inputs:\n{last_lines}"
            )
        if code != 0:
            raise TrainingFailed(f"training exited with code {code}; last output:\n{last_lines}")
        if sealed_lineage_key(self.store, spec.output_prefix) != spec.lineage_key:
            raise TrainingFailed(
                f"training exited 0 but wrote no complete model (MANIFEST.json) at {output_uri}"
            )
        return JobOutcome(spec.lineage_key, output_uri, execution, duration, reused=False)

    @contextlib.contextmanager
    def _execution_lock(self, lineage_key: str) -> Iterator[str]:
        """Refuse to start a second execution while one for the same key is still running."""
        lock = self.store.path(f"runs/{lineage_key}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        execution = f"local-{lineage_key}-{os.getpid()}-{int(time.time())}"
        try:
            _create_lock(lock, execution)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and pid_alive(holder):
                raise TransientError(
                    f"a training execution for {lineage_key} is still running (pid "
                    f"{holder}); not starting another — this run retries later"
                ) from None
            lock.unlink(missing_ok=True)  # left by a crashed run
            _create_lock(lock, execution)
        try:
            yield execution
        finally:
            lock.unlink(missing_ok=True)


def _create_lock(lock: Path, execution: str) -> None:
    """Create the lock atomically (`x` mode fails if another run created it first)."""
    with lock.open("x") as handle:
        json.dump({"pid": os.getpid(), "execution": execution}, handle)


def _lock_holder(lock: Path) -> int | None:
    try:
        return int(json.loads(lock.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
