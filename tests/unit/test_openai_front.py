"""The local `transformers` server as OpenAI clients meet it, through our front process.

One real server on the tiny demo model for the module (starting it takes 20-60 s on 2 cores);
the front's process handling is checked with small stand-in children, which start instantly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from core.contracts import Endpoint
from tasks.backends.local.openai_front import rename_event_line, rename_json
from tasks.backends.local.processes import free_port, pid_alive, stop_process_group
from tasks.backends.local.provision import LocalProvisioner
from tasks.backends.local.server import LocalModelServer, front_environment
from tasks.backends.local.store import LocalFolderStore
from tests.conftest import REPO_ROOT

SERVED = "emoji-gemma"
PROMPT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Translate to emoji: I love pizza"}
]


def children_of(pid: int) -> list[int]:
    """The live child pids of `pid` (Linux /proc)."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in listed]


def running(pid: int) -> bool:
    """True while `pid` runs: an exited process not yet reaped (a zombie) does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pid: int, within_s: float = 20.0) -> bool:
    """True once `pid` no longer runs; the bound only keeps a broken stop from hanging."""
    deadline = time.monotonic() + within_s
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not running(pid)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Endpoint]:
    store = LocalFolderStore(tmp_path_factory.mktemp("store"))
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    shutil.copytree(tiny_model_dir, store.path("models/tiny"))
    server = LocalModelServer(store, engine="transformers", host="127.0.0.1", port=0)
    endpoint = server.deploy("models/tiny", SERVED, deadline_s=240)
    try:
        yield endpoint
    finally:
        stop_process_group(int(endpoint.server_id))


@pytest.fixture(scope="module")
def client(served: Endpoint) -> OpenAI:
    return OpenAI(base_url=f"{served.base_url}/v1", api_key="unused", max_retries=0)


def test_models_lists_only_the_served_name(served: Endpoint, client: OpenAI) -> None:
    answer = httpx.get(f"{served.base_url}/v1/models", timeout=30)
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "list"
    assert [(card["id"], card["object"]) for card in body["data"]] == [(SERVED, "model")]
    assert isinstance(body["data"][0]["created"], int) and body["data"][0]["owned_by"]
    assert [model.id for model in client.models.list()] == [SERVED]
    assert client.models.retrieve(SERVED).id == SERVED
    assert httpx.get(f"{served.base_url}/v1/models/other", timeout=30).status_code == 404


def test_chat_completion_names_the_model_as_requested(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=SERVED, messages=PROMPT, max_tokens=8, temperature=0
    )
    assert completion.model == SERVED
    assert completion.choices[0].message.content


def test_streamed_chunks_name_the_model_as_requested(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SERVED, messages=PROMPT, max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    assert len(chunks) > 1
    assert {chunk.model for chunk in chunks} == {SERVED}
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def test_stopping_the_group_stops_front_and_model_server(served: Endpoint) -> None:
    front = int(served.server_id)
    model_servers = children_of(front)
    assert len(model_servers) == 1 and running(model_servers[0])
    stop_process_group(front)
    assert not pid_alive(front)
    assert wait_gone(model_servers[0]), "the model server outlived the front"


def start_front(child: str) -> subprocess.Popen[bytes]:
    """The real front, as server.py starts it, over a stand-in model server."""
    return subprocess.Popen(
        [sys.executable, "-m", "tasks.backends.local.openai_front",
         "--served-name", SERVED, "--host", "127.0.0.1", "--port", str(free_port("127.0.0.1")),
         "--upstream-port", str(free_port("127.0.0.1")), "--", sys.executable, "-c", child],
        cwd=REPO_ROOT / "tests", env=front_environment(), start_new_session=True,
    )  # fmt: skip


def wait_for_child(front: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while not children_of(front.pid) and front.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    (child,) = children_of(front.pid)
    return child


def test_a_crashed_front_takes_its_model_server_with_it() -> None:
    front = start_front("import time; time.sleep(120)")
    try:
        child = wait_for_child(front)
        os.kill(front.pid, signal.SIGKILL)  # no cleanup code runs
        front.wait(timeout=30)
        assert wait_gone(child), "the model server outlived a killed front"
    finally:
        stop_process_group(front.pid)


def test_the_front_exits_with_its_model_servers_code() -> None:
    front = start_front("raise SystemExit(3)")
    try:
        assert front.wait(timeout=60) == 3
    finally:
        stop_process_group(front.pid)


def test_only_the_served_name_is_renamed() -> None:
    body = {"model": "emoji-gemma@main", "output": [{"model": "other@main"}]}
    renamed = json.loads(rename_json(json.dumps(body).encode(), SERVED))
    assert renamed == {"model": SERVED, "output": [{"model": "other@main"}]}
    assert rename_json(b"not json", SERVED) == b"not json"
    line = 'data: {"id": "1", "model": "emoji-gemma@main"}'
    assert rename_event_line(line, SERVED) == 'data: {"id": "1", "model": "emoji-gemma"}'
    assert rename_event_line("data: [DONE]", SERVED) == "data: [DONE]"
    assert rename_event_line("event: done", SERVED) == "event: done"
