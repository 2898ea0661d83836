"""Progress of long steps in the Prefect UI: a progress artifact plus a log line per 10 %.

One bar per step that never goes backwards: the training job reports its whole run, weighted
by phase (job_image/joblog.py), and the reporter never lowers what it has shown — a report
that would (a restarted phase, an older job image's per-phase counts) leaves the bar as it is.

Backends report from reader threads. Those threads must never die on a progress update: a
dead reader stops draining the job's output, and the job then blocks on a full pipe. So an
update that fails is logged once and the bar stays where it was; the step goes on.
"""

from __future__ import annotations

import contextvars
import logging
import time
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from core.contracts import Progress

MIN_UPDATE_INTERVAL_S = 2.0
LOG_EVERY_PERCENT = 10


class ProgressReporter:
    """Callable handed to backends as `on_progress`; throttled so the API is not flooded."""

    def __init__(self, key: str, description: str, logger: logging.LoggerAdapter) -> None:  # type: ignore[type-arg]
        self.description = description
        self.logger = logger
        # Created here, in the task's thread; reader threads carry no Prefect context, so the
        # task's (its API URL, its run) is kept and each update runs inside a copy of it.
        self._artifact: UUID = create_progress_artifact(
            progress=0.0, key=key, description=description
        )
        self._context = contextvars.copy_context()
        self._update_failed = False
        self._last_update = time.monotonic()
        self._last_logged_percent = -LOG_EVERY_PERCENT
        self._shown = 0.0

    def __call__(self, progress: Progress) -> None:
        percent = 100.0 * progress.done / progress.total if progress.total > 0 else 0.0
        percent, previous = max(self._shown, min(100.0, percent)), self._shown
        self._shown = percent
        finished = percent >= 100.0 > previous  # always shown, once
        now = time.monotonic()
        if now - self._last_update >= MIN_UPDATE_INTERVAL_S or finished:
            self._update_artifact(percent)
            self._last_update = now
        if percent - self._last_logged_percent >= LOG_EVERY_PERCENT or finished:
            self._last_logged_percent = percent
            self.logger.info(
                "%s: %3.0f%% (%g/%g) %s",
                self.description,
                percent,
                progress.done,
                progress.total,
                progress.message,
            )

    def _update_artifact(self, percent: float) -> None:
        try:
            self._context.copy().run(update_progress_artifact, self._artifact, percent)
        except Exception as error:  # progress is shown, never load-bearing
            if not self._update_failed:
                self._update_failed = True
                self.logger.warning("%s: progress bar not updated (%s)", self.description, error)
