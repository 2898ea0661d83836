"""A real `prefect server` and `process` worker on 127.0.0.1, started and stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tasks.backends.local.processes import free_port, stop_process_group

SERVER_START_DEADLINE_S = 90


def prefect_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


@contextmanager
def running_server(
    home: Path, log: Path, *, ui: bool = False
) -> Iterator[tuple[str, dict[str, str]]]:
    """Yields the API URL and the environment that points a client or worker at it.

    With `ui`, the server also serves its web UI at the URL without `/api`.
    """
    port = free_port("127.0.0.1")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": str(ui).lower(),
        # The UI asks its browser to call this; by default it would be port 4200.
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        # Queued runs of a deployment at its concurrency limit are retried this often.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
    }
    with log.open("w") as handle:
        process = subprocess.Popen(
            prefect_command("server", "start", "--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(api_url, process, log)
        yield api_url, {**env, "PREFECT_API_URL": api_url}
    finally:
        stop_process_group(process.pid)


def _wait_healthy(api_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy in {SERVER_START_DEADLINE_S} s")


@contextmanager
def running_worker(pool: str, env: Mapping[str, str], cwd: Path, log: Path) -> Iterator[None]:
    """A process worker polling `pool` every second; stopped with SIGINT as Prefect expects."""
    with log.open("w") as handle:
        process = subprocess.Popen(
            prefect_command("worker", "start", "--pool", pool, "--type", "process"),
            env={
                **env,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            },
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        process.send_signal(2)  # SIGINT: the worker finishes cleanly
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop_process_group(process.pid)
