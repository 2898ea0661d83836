"""A local OpenAI-compatible server on 127.0.0.1: vLLM when importable, else `transformers serve`.

Rollout mirrors Cloud Run: a *candidate* server starts on a fresh port next to the live one,
the smoke test runs against the candidate, and only `promote` retires the old server and
records the new one in `serving.json`. A failed candidate is stopped; the live one never
notices.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from core.contracts import ConfigurationError, DeployFailed, Endpoint
from tasks.backends.local.processes import free_port, pid_alive, stop_process_group
from tasks.backends.local.store import LocalFolderStore

STATE_FILE = "serving.json"
LOOPBACK = "127.0.0.1"  # where the front reaches `transformers serve`
SERVED_MODEL_FILE = "model.json"  # in each server's working folder: which version it serves
READY_POLL_S = 0.5


def pick_engine(requested: str) -> str:
    """`auto` prefers vLLM (what Cloud Run serves) and falls back to transformers."""
    if requested == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    if requested == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigurationError(
            "serving.engine: 'vllm' is not installed in this environment; install vLLM "
            "or set serving.engine=transformers"
        )
    return requested


def vllm_command(model_dir: Path, served_name: str, host: str, port: int) -> list[str]:
    """vLLM's OpenAI server (`/v1/chat/completions`), not the bare `/generate` api_server."""
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", served_name,
        "--host", host, "--port", str(port),
        "--generation-config", "auto",
    ]  # fmt: skip


def transformers_command(served_name: str, host: str, port: int) -> list[str]:
    """`transformers serve` on a loopback port behind our front (`openai_front`), which lists
    the served name at `/v1/models` and names the model as requested in answers (transformers
    alone answers `/v1/models` from the hub cache and says `<name>@main`).

    `transformers serve` answers only to the model path it preloads, so that path *is* the
    served name: a link named `served_name` in the server's working directory."""
    executable = Path(sys.executable).with_name("transformers")
    program = str(executable) if executable.exists() else shutil.which("transformers")
    if program is None or importlib.util.find_spec("uvicorn") is None:
        raise ConfigurationError(
            "serving.engine: `transformers serve` not found; install the `serve` extra "
            "(pip install -e '.[serve]')"
        )
    inner = free_port(LOOPBACK)
    while inner == port:
        inner = free_port(LOOPBACK)
    return [
        sys.executable, "-m", "tasks.backends.local.openai_front",
        "--served-name", served_name, "--host", host, "--port", str(port),
        "--upstream-port", str(inner),
        "--", program, "serve", served_name, "--host", LOOPBACK, "--port", str(inner),
    ]  # fmt: skip


def front_environment() -> dict[str, str]:
    """The front runs as `python -m tasks…` from the server's work folder: put the folder that
    holds this `tasks` package first on its path, so it runs this code even uninstalled."""
    root = str(Path(__file__).resolve().parents[3])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, path] if path else [root])}


class LocalModelServer:
    """`ModelServer` running one process per model version, state kept in the store."""

    def __init__(self, store: LocalFolderStore, engine: str, host: str, port: int) -> None:
        self.store = store
        self.engine = engine
        self.host = host
        self.port = port

    @property
    def state_path(self) -> Path:
        return self.store.root / STATE_FILE

    def live(self) -> Endpoint | None:
        """The promoted server, if one is recorded and its process still runs."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        endpoint = Endpoint(**state)
        return endpoint if pid_alive(int(endpoint.server_id)) else None

    def deploy(self, model_prefix: str, served_model_name: str, deadline_s: float) -> Endpoint:
        engine = pick_engine(self.engine)
        model_dir = self.store.path(model_prefix)
        port = self.port or free_port(self.host)
        workdir = self.store.path(f"runs/serve-{port}")
        workdir.mkdir(parents=True, exist_ok=True)
        environment = None
        (workdir / SERVED_MODEL_FILE).write_text(json.dumps({"model_prefix": model_prefix}))
        if engine == "vllm":
            command = vllm_command(model_dir, served_model_name, self.host, port)
        else:
            link = workdir / served_model_name
            link.unlink(missing_ok=True)
            link.symlink_to(model_dir, target_is_directory=True)
            command = transformers_command(served_model_name, self.host, port)
            environment = front_environment()
        log_path = self.store.path(f"logs/server-{port}.log")
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,  # survives this run when asked to keep serving
            )
        endpoint = Endpoint(
            base_url=f"http://{self.host}:{port}",
            model=served_model_name,
            engine=engine,
            server_id=str(process.pid),
        )
        try:
            wait_until_ready(endpoint, process, deadline_s, log_path)
        except BaseException:
            stop_process_group(process.pid)
            raise
        return endpoint

    def served_prefix(self, endpoint: Endpoint) -> str | None:
        """The store prefix of the model `endpoint` serves (recorded when it was deployed)."""
        port = urlsplit(endpoint.base_url).port
        try:
            record = json.loads(
                self.store.path(f"runs/serve-{port}/{SERVED_MODEL_FILE}").read_text()
            )
        except (OSError, ValueError):
            return None
        prefix = record.get("model_prefix") if isinstance(record, dict) else None
        return prefix if isinstance(prefix, str) else None

    def promote(self, endpoint: Endpoint) -> None:
        previous = self.live()
        if previous is not None and previous.server_id != endpoint.server_id:
            stop_process_group(int(previous.server_id))
        state = {
            "base_url": endpoint.base_url,
            "model": endpoint.model,
            "engine": endpoint.engine,
            "server_id": endpoint.server_id,
        }
        self.state_path.write_text(json.dumps(state, indent=2) + "\n")

    def discard(self, endpoint: Endpoint) -> str:
        stop_process_group(int(endpoint.server_id))
        live = self.live()
        serving = f"server {live.server_id} keeps serving" if live else "nothing serves"
        return f"candidate server {endpoint.server_id} stopped; {serving}"

    def release(self, endpoint: Endpoint) -> None:
        stop_process_group(int(endpoint.server_id))
        live = self.live()
        if live is None or live.server_id == endpoint.server_id:
            self.state_path.unlink(missing_ok=True)

    def how_to_stop(self, endpoint: Endpoint) -> str:
        return f"kill -TERM -- -{endpoint.server_id}   (the server's process group)"

    def request_headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {}  # a loopback server needs no credentials


def wait_until_ready(
    endpoint: Endpoint, process: subprocess.Popen[bytes], deadline_s: float, log_path: Path
) -> None:
    """Poll `/health` until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    url = f"{endpoint.base_url}/health"
    while time.monotonic() < deadline:
        if process.poll() is not None or not pid_alive(process.pid):
            raise DeployFailed(
                f"{endpoint.engine} server exited with code {process.returncode} before it "
                f"was ready; last log lines:\n{_tail(log_path)}"
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(READY_POLL_S)
    raise DeployFailed(
        f"{endpoint.engine} server at {endpoint.base_url} was not ready within {deadline_s:.0f} s "
        f"(raise serving.startup_timeout_s); last log lines:\n{_tail(log_path)}"
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
