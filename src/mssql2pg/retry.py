"""Retrying transient failures: exponential backoff with jitter (:class:`Backoff`) and the one retry policy
of a pipeline (:class:`Retry`), shared by its start-up and its replication loop.

The pipeline never drops data, so it never gives up on a transient error by default: it waits longer and
longer (``initial`` doubling up to ``maximum``) and keeps trying. After ``alert_after`` of continuous failure
the condition is *reported* (health turns unhealthy and the alert fires, see
:meth:`mssql2pg.observability.Observability.component_failed`); an operator fixes the cause and replication
resumes by itself. ``max_attempts`` makes it give up instead (a supervisor restarts it). A terminal error is
raised at once: retrying cannot fix bad data or a missing table.

Jitter spreads retries of many processes so they do not hit a recovering server in lock-step:

* ``full`` — attempt *n* waits ``uniform(initial, min(maximum, initial * multiplier**n))``;
* ``decorrelated`` — attempt *n* waits ``min(maximum, uniform(initial, previous * multiplier))``.

Randomness is injectable so tests are deterministic; waits are on a ``threading.Event`` (set on SIGTERM), which
interrupts a wait at once instead of after up to a minute.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import structlog

from mssql2pg.errors import RETRIED_HINT, Mssql2pgError, TerminalError, TransientError

log = structlog.get_logger(component="retry")

T = TypeVar("T")


class BackoffSettings(Protocol):
    """The fields of :class:`mssql2pg.config.RetrySettings` that :class:`Backoff` and :class:`Retry` use."""

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
    def max_attempts(self) -> int | None: ...


class Backoff:
    """The delay sequence. ``delays()`` starts a fresh, endless sequence each time it is called, so
    ``Backoff(settings).delays`` is the factory :class:`Retry` takes."""

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


OnRetry = Callable[[int, float, TransientError], None]
"""Called after a failed attempt that will be retried: (failed attempts in a row, next delay, the error)."""


class RetriesExhaustedError(TerminalError):
    """``retry.max_attempts`` attempts failed in a row: the process gives up (``__cause__`` is the last error)."""


class Retry:
    """The one retry policy of a pipeline, shared by its start-up and its streaming.

    An *attempt* is one try at the work: building the pipeline (discovery, control state), or one run of the
    replication loop from the checkpoint. ``failed`` is told about each attempt that ended with an error; it
    classifies the error (a terminal one is raised at once), counts the failures in a row, logs one line per
    failed attempt (the classified error, the side it came from, the attempt number, the next delay), reports
    it through ``on_retry`` (metrics and ``/readyz``) and returns the delay to wait. ``recovered`` is told when
    an attempt made progress again (start-up succeeded, or the replication loop committed): the count and the
    delays start over, and ``on_recovered`` clears what ``on_retry`` reported.

    With ``max_attempts``, the failure that makes it that many in a row raises :class:`RetriesExhaustedError`
    instead of returning a delay. Because the count is shared, failures at start-up and while streaming count
    together, and an attempt that made progress before it failed starts a new count.
    """

    def __init__(
        self,
        classify: Callable[[BaseException], TransientError | TerminalError],
        delays: Callable[[], Iterator[float]],
        *,
        max_attempts: int | None = None,
        on_retry: OnRetry | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        self.classify = classify
        self.max_attempts = max_attempts
        self.on_retry = on_retry
        self.on_recovered = on_recovered
        self.failures = 0
        """Failed attempts since the last progress."""
        self._delays = delays
        self._sequence = delays()

    @classmethod
    def from_settings(
        cls,
        settings: BackoffSettings,
        classify: Callable[[BaseException], TransientError | TerminalError],
        *,
        on_retry: OnRetry | None = None,
        on_recovered: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> Retry:
        """The policy ``retry:`` configures: its backoff and its ``max_attempts``."""
        return cls(
            classify,
            Backoff(settings, rng=rng).delays,
            max_attempts=settings.max_attempts,
            on_retry=on_retry,
            on_recovered=on_recovered,
        )

    def failed(self, exc: BaseException) -> float:
        """An attempt ended with ``exc``: the delay before the next one. Raises a terminal error (unchanged if it
        already was an error of mssql2pg), or :class:`RetriesExhaustedError` after ``max_attempts``."""
        error = self.classify(exc)
        if error is not exc and hasattr(exc, "component"):
            setattr(error, "component", exc.component)  # noqa: B010 - which side failed, for health and logs
        if isinstance(error, TerminalError):
            if isinstance(exc, Mssql2pgError):
                raise exc  # a configuration or set-up problem keeps its own message and type
            raise error from exc
        self.failures += 1
        fields: dict[str, object] = {
            "attempt": self.failures,
            "max_attempts": self.max_attempts,
            "component_name": getattr(error, "component", None) or "pipeline",
            "error": str(error).splitlines()[0],
            "code": getattr(error, "code", None),
        }
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            log.error("transient fault; giving up (retry.max_attempts)", **fields)
            msg = (
                f"gave up after {self.failures} failed attempts in a row (retry.max_attempts = {self.max_attempts}); "
                f"the last: {fields['error']}"
            )
            side = fields["component_name"]
            own = getattr(error, "hint", None)  # the fault's own remedy (a refused certificate: the CA to set)
            if own and own != RETRIED_HINT:
                fix = f"{own}; "
            else:
                fix = f"check that the {side} database is up and reachable; " if side != "pipeline" else ""
            raise RetriesExhaustedError(
                msg,
                hint=f"{fix}nothing is lost: the next start resumes from the last committed checkpoint (unset "
                "retry.max_attempts to keep retrying until the cause is fixed)",
            ) from error
        delay = next(self._sequence)
        log.warning("transient fault; retrying", next_delay_s=round(delay, 3), **fields)
        if self.on_retry is not None:
            self.on_retry(self.failures, delay, error)
        return delay

    def recovered(self) -> None:
        """An attempt made progress: failures in a row and the delays start over."""
        if not self.failures:
            return
        log.info("recovered", failed_attempts=self.failures)
        self.failures = 0
        self._sequence = self._delays()
        if self.on_recovered is not None:
            self.on_recovered()

    def call(self, fn: Callable[[], T], stop: threading.Event) -> T | None:
        """Call ``fn`` until it succeeds (its result), or until ``stop`` is set (None). A set ``stop`` ends a
        wait at once."""
        while not stop.is_set():
            try:
                result = fn()
            except Exception as exc:
                stop.wait(self.failed(exc))
                continue
            self.recovered()
            return result
        return None


__all__ = ["Backoff", "BackoffSettings", "OnRetry", "RetriesExhaustedError", "Retry"]
