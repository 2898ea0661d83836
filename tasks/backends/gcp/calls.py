"""Every Google API call goes through `GoogleCalls.call`: retried on its own, never blindly.

One run makes a few hundred calls; an isolated 503 on any of them must not fail the run, and
retrying the whole step (as Prefect's task retries would) multiplies the cost of each. So each
call is retried in place, with exponential backoff and jitter, until `gcp.api_retry_deadline_s`:

- 429 without a quota behind it, 5xx, dropped connections: retried.
- 403 SERVICE_DISABLED naming an API *this run just enabled*: retried until
  `gcp.service_enable_propagation_s` after the enable (Google: "wait a few minutes for the
  action to propagate … and retry"); for any other API it is a permanent error.
- 409 ALREADY_EXISTS or ABORTED, 412, for calls that read before they write (`converge=True`):
  the call is redone from its read, so a resource another caller just created is adopted and
  a stale etag is replaced by a fresh one.
- Calls that are not idempotent (`adopt=`): before another try, look for what the failed
  attempt may have started (by its attempt id) and adopt it.

Nothing else is retried: quota, permission, validation and not-found errors fail at once.
A log line says "retrying" only right before the retry it announces.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from google.api_core import exceptions as gexc

from core.contracts import DeadlineExceeded, LogCallback, PipelineError, TransientError
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.errors import (
    ABORTED,
    ALREADY_EXISTS,
    as_api_error,
    disabled_service,
    error_status,
    is_transient,
    summary,
    translate,
    where,
)

T = TypeVar("T")
MAX_DELAY_S = 30.0
_logger = logging.getLogger(__name__)


class ApiRetriesExhausted(DeadlineExceeded):
    """A call still failed transiently when its retry deadline ran out (not retried again)."""


class GoogleCalls:
    """The retry policy of one backend; remembers which APIs this run enabled, and when."""

    def __init__(
        self,
        names: GcpNames,
        settings: GcpSettings,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.names = names
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self._enabled_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def just_enabled(self, services: Iterable[str]) -> None:
        """Note that this run enabled `services` now: their 403s are propagation, for a while."""
        with self._lock:
            for service in services:
                self._enabled_at[service] = self.clock()

    def call(
        self,
        action: str,
        resource: str,
        fn: Callable[[], T],
        *,
        converge: bool = False,
        adopt: Callable[[], T | None] | None = None,
        on_log: LogCallback | None = None,
    ) -> T:
        """`fn()`, retried as the module docstring says; errors come out translated."""
        log = on_log or _logger.warning
        at = where(self.names, action, resource)
        started = self.clock()
        attempt = 1
        while True:
            try:
                return fn()
            except PipelineError:
                raise
            except Exception as raw:
                error = as_api_error(raw)
                why, until, setting = self._why_retry(error, converge, started)
                if why is None:
                    raise self._final(error, action, resource) from None
                if adopt is not None:
                    found = adopt()
                    if found is not None:
                        log(f"{at}: {why}, but the attempt had gone through; using what it made")
                        return found
                delay = self._delay(attempt)
                if self.clock() + delay > until:
                    raise ApiRetriesExhausted(
                        f"{at}: {why}; gave up after {attempt} attempt(s) in "
                        f"{self.clock() - started:.0f} s (gcp.{setting}); rerun when it clears"
                    ) from None
                log(f"{at}: {why}; retrying in {delay:.1f} s (attempt {attempt + 1})")
                self.sleep(delay)
                attempt += 1

    def _why_retry(
        self, error: Exception, converge: bool, started: float
    ) -> tuple[str | None, float, str]:
        """(what happened, retry until, the setting bounding it); None when not retryable."""
        retry_until = started + self.settings.api_retry_deadline_s
        if is_transient(error):
            return _describe(error), retry_until, "api_retry_deadline_s"
        service = disabled_service(error)
        if service is not None:
            with self._lock:
                enabled_at = self._enabled_at.get(service)
            if enabled_at is not None:
                until = enabled_at + self.settings.service_enable_propagation_s
                why = f"{service} is still being enabled (403 SERVICE_DISABLED)"
                return why, until, "service_enable_propagation_s"
            return None, 0.0, ""
        if converge:
            status = error_status(error)
            if status == ALREADY_EXISTS:
                return (
                    "created meanwhile by another caller; re-reading",
                    retry_until,
                    ("api_retry_deadline_s"),
                )
            if status == ABORTED or isinstance(error, gexc.PreconditionFailed):
                return (
                    "changed concurrently (stale etag); re-reading and redoing",
                    retry_until,
                    ("api_retry_deadline_s"),
                )
        return None, 0.0, ""

    def _final(self, error: Exception, action: str, resource: str) -> Exception:
        translated = translate(error, self.names, action, resource)
        if translated is None:
            return error
        if isinstance(translated, TransientError):  # retryable, but not by this caller
            return ApiRetriesExhausted(f"{translated}; not retried here: rerun")
        return translated

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter on its upper half: spreads concurrent runs."""
        ceiling = min(MAX_DELAY_S, self.settings.api_retry_first_delay_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def poll(
        self,
        what: str,
        fn: Callable[[], T | None],
        within_s: float,
    ) -> T | None:
        """`fn()` every poll interval until it returns something or `within_s` passes (for
        eventually consistent listings); each try is itself a retried call."""
        deadline = self.clock() + within_s
        while True:
            found = self.call("list", what, fn)
            if found is not None or self.clock() >= deadline:
                return found
            self.sleep(self.settings.poll_interval_s)


def _describe(error: Exception) -> str:
    if isinstance(error, gexc.GoogleAPICallError):
        return f"HTTP {error.code} ({summary(str(error.message or error))})"
    return f"connection failed ({type(error).__name__})"
