"""Cloud Logging's `entries.list` for the Google APIs fake: the entries its executions write.

It behaves as Google's does where the runner depends on it:

- entries become visible only `lag_s` after they are written (Logging lags the container);
- `timestamp>=` is inclusive (lines written in one instant share a timestamp, so a client
  asking from the newest entry it saw gets that entry again);
- pages hold at most `page_size` entries (Google may return fewer than `pageSize`), with an
  opaque `nextPageToken` valid only for the same filter;
- a filter it cannot parse or does not support is a 400 INVALID_ARGUMENT: it understands an
  AND of `field="value"` and `timestamp>="…"` clauses on the fields Cloud Run jobs' entries
  carry, which keeps the runner's filter honest; so do `resourceNames` and `orderBy`.

Faults (403 PERMISSION_DENIED, 429) come from the fake's `inject("logging.entries.list", …)`.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# What a training execution prints (job_image/joblog.py's format): the first line when it
# starts, one more each time the execution is read while it runs, the rest when it ends.
JOB_LINES = (
    "loading base model /mnt/store/inputs/base",
    'PROGRESS {"phase": "load", "step": 1, "total": 1, "overall": 0.05}',
    'PROGRESS {"phase": "train", "step": 1, "total": 2, "overall": 0.475, "loss": 1.5}',
    'PROGRESS {"phase": "train", "step": 2, "total": 2, "overall": 0.8, "loss": 0.5}',
    "merged adapter into the base model",
    'PROGRESS {"phase": "eval", "step": 1, "total": 1, "overall": 1.0}',
    "training done",
)
EXECUTION_LABEL = "run.googleapis.com/execution_name"
_CLAUSE = re.compile(
    r'^(?P<field>resource\.type|resource\.labels\.[a-z_]+|labels\."[^"]+"|timestamp)'
    r'(?P<op>>=|=)"(?P<value>[^"]*)"$'
)
_ORDERS = {"timestamp asc": False, "timestamp desc": True}


class LoggingError(ValueError):
    """A request Google answers with 400 INVALID_ARGUMENT (the message is Google's kind)."""


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str

    def holds(self, entry: dict[str, Any]) -> bool:
        if self.field == "timestamp":
            return instant(entry["timestamp"]) >= instant(self.value)
        return _field(entry, self.field) == self.value


def instant(text: str) -> tuple[datetime, int]:
    """An RFC 3339 timestamp (up to nanoseconds) as something ordered; 400 when malformed."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", text)
    if match is None:
        raise LoggingError(f'Invalid timestamp "{text}": expected RFC 3339 UTC ("…Z")')
    seconds = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return seconds, int((match[2] or "0").ljust(9, "0"))


def parse_filter(text: str) -> list[Clause]:
    """`a="x" AND b>="y"` → its clauses; anything else is Google's 400."""
    clauses = []
    for part in text.split(" AND ") if text.strip() else []:
        match = _CLAUSE.match(part.strip())
        if match is None:
            raise LoggingError(f"Unparseable filter (the fake supports AND of = and >=): {part}")
        if (match["op"] == ">=") != (match["field"] == "timestamp"):
            raise LoggingError(f"Unsupported comparison in filter: {part}")
        if match["field"] == "timestamp":
            instant(match["value"])
        clauses.append(Clause(match["field"], match["op"], match["value"]))
    return clauses


def _field(entry: dict[str, Any], path: str) -> str | None:
    if path.startswith('labels."'):
        return entry.get("labels", {}).get(path[len('labels."') : -1])
    if path == "resource.type":
        return entry["resource"]["type"]
    return entry["resource"]["labels"].get(path.removeprefix("resource.labels."))


def rfc3339(seconds: float) -> str:
    """Nanosecond precision, as Logging writes timestamps."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1e6):06d}000Z"


class LoggingFake:
    """The log entries of the fake project's executions, and `entries.list` over them."""

    def __init__(self) -> None:
        self.lag_s = 0.0
        self.page_size = 4
        self.job_lines: tuple[str, ...] = JOB_LINES
        self._entries: list[tuple[float, dict[str, Any]]] = []  # (visible from, entry)
        self._printed: dict[str, int] = {}  # execution → how many job lines it has written
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ what executions print

    def started(self, execution: str) -> None:
        self._printed[execution] = 0
        self.running(execution)

    def running(self, execution: str) -> None:
        """One read of a running execution: it has printed one more line."""
        done = self._printed.get(execution)
        if done is not None and done < len(self.job_lines):
            self._write(execution, self.job_lines[done : done + 1])
            self._printed[execution] = done + 1

    def ended(self, execution: str) -> None:
        """Everything left, in one instant (so these entries share their timestamp)."""
        done = self._printed.pop(execution, len(self.job_lines))
        self._write(execution, self.job_lines[done:])

    def _write(self, execution: str, lines: tuple[str, ...]) -> None:
        _, project, _, region, _, job, _, execution_id = execution.split("/")
        written = time.time()
        for line in lines:
            entry = {
                "insertId": f"{next(self._ids):012x}",
                "logName": f"projects/{project}/logs/run.googleapis.com%2Fstdout",
                "resource": {
                    "type": "cloud_run_job",
                    "labels": {"job_name": job, "location": region, "project_id": project},
                },
                "labels": {
                    EXECUTION_LABEL: execution_id,
                    "run.googleapis.com/task_index": "0",
                    "run.googleapis.com/task_attempt": "0",
                },
                "textPayload": line,
                "timestamp": rfc3339(written),
                "receiveTimestamp": rfc3339(written + self.lag_s),
                "severity": "DEFAULT",
            }
            self._entries.append((time.monotonic() + self.lag_s, entry))

    # ------------------------------------------------------------------ entries.list

    def list(self, body: dict[str, Any]) -> dict[str, Any]:
        projects = {name.removeprefix("projects/") for name in body.get("resourceNames", [])}
        if not projects or any("/" in project for project in projects):
            raise LoggingError("resourceNames: one or more projects/PROJECT_ID are required")
        order = body.get("orderBy", "timestamp asc")
        if order not in _ORDERS:
            raise LoggingError(f"Invalid orderBy {order!r}: only timestamp asc|desc")
        text = body.get("filter", "")
        clauses = parse_filter(text)
        now = time.monotonic()
        visible = [
            entry
            for since, entry in self._entries
            if since <= now
            and entry["resource"]["labels"]["project_id"] in projects
            and all(clause.holds(entry) for clause in clauses)
        ]
        visible.sort(key=lambda entry: instant(entry["timestamp"]), reverse=_ORDERS[order])
        offset = self._offset(body.get("pageToken"), text)
        size = min(int(body.get("pageSize") or 50), 1000, self.page_size)
        page: dict[str, Any] = {"entries": visible[offset : offset + size]}
        if offset + size < len(visible):
            page["nextPageToken"] = _token(text, offset + size)
        return page

    @staticmethod
    def _offset(token: str | None, text: str) -> int:
        if not token:
            return 0
        try:
            state = json.loads(base64.urlsafe_b64decode(token))
        except ValueError:
            raise LoggingError("Invalid page token") from None
        if state.get("filter") != text:
            raise LoggingError("The page token does not match the request's filter")
        return int(state["offset"])


def _token(text: str, offset: int) -> str:
    state = json.dumps({"filter": text, "offset": offset})
    return base64.urlsafe_b64encode(state.encode()).decode()
