"""Child processes: streamed output, progress lines, deadlines, group stop."""

from __future__ import annotations

import sys
import time

import pytest

from core.contracts import DeadlineExceeded, Progress
from core.job_progress import parse_progress
from tasks.backends.local.processes import (
    pid_alive,
    run_streaming,
    stop_process_group,
)


def test_progress_lines_parse_and_other_lines_do_not() -> None:
    line = 'PROGRESS {"phase": "train", "step": 3, "total": 12, "overall": 0.2125, "loss": 0.5}'
    assert parse_progress(line) == Progress(done=21.25, total=100.0, message="train 3/12 loss=0.5")
    older = parse_progress('PROGRESS {"phase": "train", "step": 3, "total": 12, "loss": 0.5}')
    assert older == Progress(done=3.0, total=12.0, message="train 3/12 loss=0.5")
    assert parse_progress("PROGRESS not json") is None
    assert parse_progress('PROGRESS {"step": 1}') is None
    assert parse_progress("step 3 of 12") is None


def test_output_is_streamed_and_progress_separated() -> None:
    script = (
        "import sys\n"
        "print('hello')\n"
        'print(\'PROGRESS {"phase": "train", "step": 1, "total": 2}\')\n'
        "print('world', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    logs: list[str] = []
    progress: list[Progress] = []
    code, tail = run_streaming(
        [sys.executable, "-c", script], deadline_s=30, on_log=logs.append,
        on_progress=progress.append,
    )  # fmt: skip
    assert code == 3
    assert logs == ["hello", "world"]
    assert tail == ["hello", "world"]
    assert [p.done for p in progress] == [1.0]


def test_deadline_stops_the_whole_process_group() -> None:
    # The child starts a grandchild that would outlive a plain kill of the child.
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    logs: list[str] = []
    with pytest.raises(DeadlineExceeded, match="deadline"):
        run_streaming(
            [sys.executable, "-c", script], deadline_s=2, on_log=logs.append,
            on_progress=lambda _: None,
        )  # fmt: skip
    grandchild = int(logs[0])
    for _ in range(50):
        if not pid_alive(grandchild):
            break
        time.sleep(0.1)
    assert not pid_alive(grandchild)


def test_stopping_a_finished_group_is_harmless() -> None:
    stop_process_group(2**22 + 12345, grace_s=0.1)
