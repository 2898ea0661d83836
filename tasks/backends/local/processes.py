"""Child processes that must be streamed, bounded by a deadline, and stopped as a group.

Both the training subprocess and the local model server go through here, so both stop the
same way: SIGTERM to the whole process group (vLLM and torch spawn helpers), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from core.contracts import DeadlineExceeded, LogCallback, ProgressCallback
from core.job_progress import parse_progress


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (and is not a zombie we own)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the group led by `pid`, wait up to `grace_s`, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def free_port(host: str) -> int:
    """A port the OS says is free now (a race is possible; the server start then fails fast)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def run_streaming(
    command: Sequence[str],
    *,
    deadline_s: float,
    on_log: LogCallback,
    on_progress: ProgressCallback,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    tail_lines: int = 40,
) -> tuple[int, list[str]]:
    """Run `command`, stream its output line by line, stop it at the deadline.

    Returns the exit code and the last `tail_lines` lines (for error messages). Output is
    read on a thread so the deadline holds even when the child prints nothing for a while.
    """
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    tail: deque[str] = deque(maxlen=tail_lines)
    reader = threading.Thread(target=_pump, args=(process, tail, on_log, on_progress), daemon=True)
    reader.start()
    try:
        process.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        stop_process_group(process.pid)
        reader.join(timeout=5)
        raise DeadlineExceeded(
            f"{Path(command[1]).name if len(command) > 1 else command[0]} ran past its "
            f"{deadline_s:.0f} s deadline and was stopped; raise training.timeout_s"
        ) from None
    except BaseException:
        stop_process_group(process.pid)
        raise
    reader.join(timeout=5)
    return process.returncode, list(tail)


def _pump(
    process: subprocess.Popen[str],
    tail: deque[str],
    on_log: Callable[[str], None],
    on_progress: ProgressCallback,
) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip("\n")
        progress = parse_progress(line)
        if progress is not None:
            on_progress(progress)
            continue
        tail.append(line)
        if line.strip():
            on_log(line)
