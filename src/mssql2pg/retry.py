"""Retrying transient failures: exponential backoff with jitter, a "failing since" clock, and a stop event.

The pipeline never drops data, so it never gives up on a transient error by default: it waits longer and
longer (``initial`` doubling up to ``maximum``) and keeps trying. What changes after ``alert_after`` of
continuous failure is that the condition is *reported* (``Attempt.alerting``, ``FailureTracker.alerting``)
so health turns unhealthy and the alert fires; an operator fixes the cause and replication resumes by
itself. A terminal error is raised at once: retrying cannot fix bad data or a missing table.

Jitter spreads retries of many processes so they do not hit a recovering server in lock-step:

* ``full`` — attempt *n* waits ``uniform(initial, min(maximum, initial * multiplier**n))``;
* ``decorrelated`` — attempt *n* waits ``min(maximum, uniform(initial, previous * multiplier))``.

Clock, sleep and randomness are injectable so tests run instantly and deterministically; a
``threading.Event`` (set on SIGTERM) interrupts a wait at once instead of after up to a minute.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog

from mssql2pg.errors import Mssql2pgError, TerminalError, TransientError

log = structlog.get_logger(component="retry")

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], bool]
"""Wait ``seconds``; return True when the wait was interrupted (stop requested)."""


class BackoffSettings(Protocol):
    """The fields of :class:`mssql2pg.config.RetrySettings` that backoff uses."""

    @property
    def initial(self) -> float: ...
    @property
    def maximum(self) -> float: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def jitter(self) -> bool: ...
    @property
    def jitter_mode(self) -> str: ...
    @property
    def alert_after(self) -> float: ...
    @property
    def max_attempts(self) -> int | None: ...


class RetryStoppedError(Mssql2pgError):
    """A stop was requested while waiting to retry; ``__cause__`` is the last transient error."""


class Backoff:
    """The delay sequence. ``delays()`` starts a fresh, endless sequence each time it is called, so
    ``Backoff(settings).delays`` is the factory :class:`~mssql2pg.pipeline.runner.Runner` takes."""

    def __init__(self, settings: BackoffSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def bounds(self) -> Iterator[float]:
        """The un-jittered exponential sequence: ``initial``, ``initial * multiplier``, ... capped at
        ``maximum``. Every delay is at most the bound of its attempt."""
        s = self.settings
        bound = s.initial
        while True:
            yield min(bound, s.maximum)
            if bound < s.maximum:
                bound *= s.multiplier

    def delays(self) -> Iterator[float]:
        s = self.settings
        if not s.jitter:
            yield from self.bounds()
            return
        if s.jitter_mode == "decorrelated":
            previous = s.initial
            for bound in self.bounds():
                previous = min(s.maximum, bound, self._rng.uniform(s.initial, max(s.initial, previous * s.multiplier)))
                yield previous
            return
        for bound in self.bounds():
            yield self._rng.uniform(s.initial, bound)


class FailureTracker:
    """Remembers since when an operation has been failing without a success in between.

    Share one with health reporting: ``alerting`` turns true once failures have lasted ``alert_after``.
    """

    def __init__(self, alert_after: float, *, clock: Clock = time.monotonic) -> None:
        self.alert_after = alert_after
        self._clock = clock
        self.failing_since: float | None = None
        self.consecutive_failures = 0
        self.last_error: BaseException | None = None

    def failure(self, error: BaseException | None = None) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()
        self.consecutive_failures += 1
        self.last_error = error

    def success(self) -> None:
        self.failing_since = None
        self.consecutive_failures = 0
        self.last_error = None

    def failing_for(self) -> float:
        """Seconds of continuous failure (0 when the last attempt succeeded)."""
        return 0.0 if self.failing_since is None else self._clock() - self.failing_since

    @property
    def alerting(self) -> bool:
        return self.failing_since is not None and self.failing_for() >= self.alert_after


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt, as reported to ``on_attempt`` before the wait."""

    number: int
    """1 for the first failure since the last success."""
    error: TransientError
    next_delay: float
    failing_for: float
    """Seconds since the first failure of this run of failures."""
    alerting: bool
    """True once ``failing_for`` has reached ``alert_after``."""


def retry_call(
    fn: Callable[[], T],
    *,
    classify: Callable[[BaseException], TransientError | TerminalError],
    backoff: Backoff,
    on_attempt: Callable[[Attempt], None] | None = None,
    stop_event: threading.Event | None = None,
    tracker: FailureTracker | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep | None = None,
    what: str = "operation",
) -> T:
    """Call ``fn`` until it succeeds. Transient errors are retried after the next backoff delay (forever,
    unless ``max_attempts`` is set); terminal ones are raised at once. A set ``stop_event`` ends the wait
    with :class:`RetryStoppedError`."""
    settings = backoff.settings
    tracker = tracker or FailureTracker(settings.alert_after, clock=clock)
    wait = sleep or _waiter(stop_event)
    delays = backoff.delays()
    number = 0
    alerted = False
    while True:
        if stop_event is not None and stop_event.is_set():
            raise RetryStoppedError(f"{what}: stop requested", hint=None) from tracker.last_error
        try:
            result = fn()
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, TerminalError):
                if error is exc:
                    raise
                raise error from exc
            number += 1
            tracker.failure(error)
            if settings.max_attempts is not None and number >= settings.max_attempts:
                log.error("giving up after max_attempts", what=what, attempts=number, error=str(error))
                if error is exc:
                    raise
                raise error from exc
            attempt = Attempt(number, error, next(delays), tracker.failing_for(), tracker.alerting)
            _log_attempt(what, attempt, alerted=alerted)
            alerted = alerted or attempt.alerting
            if on_attempt is not None:
                on_attempt(attempt)
            if wait(attempt.next_delay) or (stop_event is not None and stop_event.is_set()):
                raise RetryStoppedError(f"{what}: stop requested while waiting to retry") from error
            continue
        if number:
            log.info("recovered", what=what, failed_attempts=number, failing_for_s=round(tracker.failing_for(), 3))
        tracker.success()
        return result


def _waiter(stop_event: threading.Event | None) -> Sleep:
    if stop_event is None:

        def plain(seconds: float) -> bool:
            time.sleep(seconds)
            return False

        return plain
    return stop_event.wait


def _log_attempt(what: str, attempt: Attempt, *, alerted: bool) -> None:
    fields = {
        "what": what,
        "attempt": attempt.number,
        "next_delay_s": round(attempt.next_delay, 3),
        "failing_for_s": round(attempt.failing_for, 3),
        "error": str(attempt.error).splitlines()[0],
        "code": getattr(attempt.error, "code", None),
    }
    if attempt.alerting and not alerted:
        log.error("failing for longer than retry.alert_after; still retrying", **fields)
    else:
        log.warning("transient failure; retrying", **fields)


__all__ = ["Attempt", "Backoff", "BackoffSettings", "FailureTracker", "RetryStoppedError", "retry_call"]
