"""A training execution's log lines, read from Cloud Logging into the flow run's logs.

Cloud Run sends the job container's stdout to Cloud Logging, so the runner reads it back with
`entries.list` while it waits on the execution, and once more after the execution ends
(Logging lags a few seconds behind the container: the last lines arrive after completion).
Lines go to `on_log`, the job's `PROGRESS {json}` lines (job_image/joblog.py) to `on_progress`
through the parser the local backend uses, so both backends drive the same progress artifact.

The filter names this one execution and starts at the newest entry already seen. `timestamp>=`
is inclusive, and lines written in the same instant share a timestamp, so the entries at that
instant come back on the next poll: they are skipped by their `insertId`.

Logs are an aid, never a condition of training. A failed read logs "job logs unavailable: …"
once; a refusal (403 without roles/logging.viewer, 400) stops reading this execution's logs,
while throttling (429: entries.list has a per-project read quota), 5xx and dropped connections
are tried again at the next poll.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc

from core.contracts import LogCallback, ProgressCallback
from core.job_progress import parse_progress
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.errors import as_api_error, summary

PAGE_SIZE = 1000  # Logging's maximum
MAX_PAGES_PER_POLL = 10  # a burst beyond 10 000 lines waits for the next poll


def execution_filter(job_id: str, execution_id: str, since: str | None) -> str:
    """Logging query for one execution's entries at or after `since` (RFC 3339)."""
    clauses = [
        'resource.type="cloud_run_job"',
        f'resource.labels.job_name="{job_id}"',
        f'labels."run.googleapis.com/execution_name"="{execution_id}"',
    ]
    if since:
        clauses.append(f'timestamp>="{since}"')
    return " AND ".join(clauses)


def entry_line(entry: dict[str, Any]) -> str:
    """The line a log entry carries: stdout is `textPayload`; a line that was JSON is parsed
    by Cloud Run into `jsonPayload`, whose `message` is the text."""
    if "textPayload" in entry:
        return str(entry["textPayload"]).rstrip("\n")
    payload = entry.get("jsonPayload") or {}
    return str(payload.get("message", "")).rstrip("\n")


def is_refusal(error: Exception) -> bool:
    """A 4xx other than throttling: asking again will not help."""
    return isinstance(error, gexc.ClientError) and not isinstance(error, gexc.TooManyRequests)


class ExecutionLogs:
    """Follows one execution's entries: each `poll()` forwards the lines that are new."""

    def __init__(
        self,
        clients: GoogleClients,
        job_id: str,
        execution: str,
        since: str | None,
        on_log: LogCallback,
        on_progress: ProgressCallback,
    ) -> None:
        self.clients = clients
        self.project = clients.project
        self.job_id = job_id
        self.execution_id = execution.rsplit("/", 1)[-1]
        self.since = since
        self.on_log = on_log
        self.on_progress = on_progress
        self.available = True  # False once Logging refused: the caller reports elapsed time
        self.progressed = False  # a PROGRESS line has driven the progress artifact
        self._seen: set[str] = set()  # insertIds at the `since` instant (seen again: >=)
        self._warned = False
        self._client: Any = None

    def poll(self) -> None:
        """Forward the entries that became visible since the last poll; never raises."""
        if not self.available:
            return
        try:
            for entry in self._new_entries():
                self._forward(entry)
        except Exception as raw:  # Logging must never fail training
            error = as_api_error(raw)
            if is_refusal(error):
                self.available = False
            if not self._warned:
                self._warned = True
                self.on_log(f"job logs unavailable: {summary(str(error))}")

    def _new_entries(self) -> list[dict[str, Any]]:
        """Every page of entries at or after `since`, minus those already forwarded."""
        if self._client is None:
            self._client = self.clients.logging()
        body: dict[str, Any] = {
            "resourceNames": [f"projects/{self.project}"],
            "filter": execution_filter(self.job_id, self.execution_id, self.since),
            "orderBy": "timestamp asc",
            "pageSize": PAGE_SIZE,
        }
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES_PER_POLL):
            page = self._client.entries().list(body=body).execute()
            found += page.get("entries", [])
            token = page.get("nextPageToken")
            if not token:
                break
            body["pageToken"] = token
        return [entry for entry in found if entry.get("insertId") not in self._seen]

    def _forward(self, entry: dict[str, Any]) -> None:
        timestamp = str(entry.get("timestamp", ""))
        if timestamp and timestamp != self.since:
            self.since, self._seen = timestamp, set()
        self._seen.add(str(entry.get("insertId")))
        line = entry_line(entry)
        progress = parse_progress(line)
        if progress is not None:
            self.progressed = True
            self.on_progress(progress)
        elif line.strip():
            self.on_log(line)
