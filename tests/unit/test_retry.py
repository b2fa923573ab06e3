from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssql2pg.classify import classify
from mssql2pg.config import RetrySettings
from mssql2pg.errors import TerminalError, TransientError
from mssql2pg.retry import Attempt, Backoff, FailureTracker, RetryStoppedError, retry_call


class FakeClock:
    """A monotonic clock that only moves when the fake sleep says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return False  # not interrupted


def flaky(failures: list[BaseException], result: str = "ok") -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result

    return calls, fn


def test_without_jitter_delays_double_up_to_the_maximum() -> None:
    backoff = Backoff(RetrySettings(initial=1, maximum=60, multiplier=2, jitter=False))

    assert list(itertools.islice(backoff.delays(), 9)) == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(min_value=0.001, max_value=10),
    spread=st.floats(min_value=1, max_value=1000),
    multiplier=st.floats(min_value=1, max_value=5),
    mode=st.sampled_from(["full", "decorrelated"]),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jittered_delays_stay_within_bounds(
    initial: float, spread: float, multiplier: float, mode: str, seed: int
) -> None:
    maximum = initial * spread
    retry = RetrySettings(initial=initial, maximum=maximum, multiplier=multiplier, jitter=True, jitter_mode=mode)  # type: ignore[arg-type]
    backoff = Backoff(retry, rng=random.Random(seed))

    delays = list(itertools.islice(backoff.delays(), 40))

    assert all(initial <= d <= maximum for d in delays)
    # the upper bound of the window grows: after enough attempts delays can reach the cap's neighbourhood
    bounds = list(itertools.islice(Backoff(retry).bounds(), 40))
    assert bounds == sorted(bounds)
    assert all(d <= b for d, b in zip(delays, bounds, strict=True))


def test_full_jitter_actually_varies() -> None:
    backoff = Backoff(RetrySettings(initial=1, maximum=60, jitter=True), rng=random.Random(7))

    later = list(itertools.islice(backoff.delays(), 30))[10:]

    assert len(set(later)) > 5


def test_each_delays_call_starts_over() -> None:
    backoff = Backoff(RetrySettings(jitter=False))
    first = backoff.delays()
    next(first), next(first), next(first)

    assert next(backoff.delays()) == 1.0


def test_transient_errors_are_retried_until_success() -> None:
    clock = FakeClock()
    calls, fn = flaky([ConnectionResetError(104, "reset")] * 5)
    attempts: list[Attempt] = []

    result = retry_call(
        fn,
        classify=classify,
        backoff=Backoff(RetrySettings(jitter=False)),
        on_attempt=attempts.append,
        clock=clock,
        sleep=clock.sleep,
    )

    assert result == "ok"
    assert len(calls) == 6
    assert clock.slept == [1, 2, 4, 8, 16]
    assert [a.number for a in attempts] == [1, 2, 3, 4, 5]
    assert all(isinstance(a.error, TransientError) for a in attempts)
    assert attempts[-1].next_delay == 16


def test_terminal_errors_are_not_retried() -> None:
    clock = FakeClock()
    calls, fn = flaky([ZeroDivisionError("bad row")])

    with pytest.raises(TerminalError) as caught:
        retry_call(fn, classify=classify, backoff=Backoff(RetrySettings()), clock=clock, sleep=clock.sleep)

    assert len(calls) == 1
    assert clock.slept == []
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_never_gives_up_by_default() -> None:
    clock = FakeClock()
    calls, fn = flaky([TimeoutError("t")] * 500)

    assert retry_call(fn, classify=classify, backoff=Backoff(RetrySettings()), clock=clock, sleep=clock.sleep) == "ok"
    assert len(calls) == 501


def test_max_attempts_stops_with_the_last_error() -> None:
    clock = FakeClock()
    calls, fn = flaky([TimeoutError("t")] * 10)

    with pytest.raises(TransientError):
        retry_call(
            fn,
            classify=classify,
            backoff=Backoff(RetrySettings(max_attempts=3)),
            clock=clock,
            sleep=clock.sleep,
        )

    assert len(calls) == 3


def test_alert_condition_after_alert_after_of_continuous_failure() -> None:
    clock = FakeClock()
    _calls, fn = flaky([ConnectionRefusedError(111, "refused")] * 20)
    attempts: list[Attempt] = []

    retry_call(
        fn,
        classify=classify,
        backoff=Backoff(RetrySettings(jitter=False, alert_after=600)),
        on_attempt=attempts.append,
        clock=clock,
        sleep=clock.sleep,
    )

    alerting = [a for a in attempts if a.alerting]
    assert alerting, "the alert condition must be raised"
    assert all(a.failing_for >= 600 for a in alerting)
    assert all(a.failing_for < 600 for a in attempts if not a.alerting)
    assert not attempts[0].alerting


def test_failure_tracker_resets_on_success() -> None:
    clock = FakeClock()
    tracker = FailureTracker(alert_after=60, clock=clock)

    tracker.failure()
    clock.now += 61
    tracker.failure()
    assert tracker.alerting
    assert tracker.consecutive_failures == 2
    assert tracker.failing_for() == 61

    tracker.success()
    assert not tracker.alerting
    assert tracker.failing_since is None
    assert tracker.consecutive_failures == 0
    assert tracker.failing_for() == 0


def test_tracker_shared_with_the_caller_sees_failures() -> None:
    clock = FakeClock()
    tracker = FailureTracker(alert_after=600, clock=clock)
    seen: list[float | None] = []
    _calls, fn = flaky([TimeoutError("t")] * 2)

    retry_call(
        fn,
        classify=classify,
        backoff=Backoff(RetrySettings(jitter=False)),
        tracker=tracker,
        on_attempt=lambda a: seen.append(tracker.failing_since),
        clock=clock,
        sleep=clock.sleep,
    )

    assert seen == [1000.0, 1000.0]
    assert tracker.failing_since is None  # success cleared it


def test_stop_event_interrupts_the_backoff_wait() -> None:
    stop = threading.Event()
    calls, fn = flaky([TimeoutError("t")] * 100)
    backoff = Backoff(RetrySettings(initial=3600, maximum=3600, jitter=False))

    def set_stop(attempt: Attempt) -> None:
        stop.set()  # SIGTERM arrives while we are about to wait an hour

    with pytest.raises(RetryStoppedError) as caught:
        retry_call(fn, classify=classify, backoff=backoff, on_attempt=set_stop, stop_event=stop)

    assert len(calls) == 1
    assert isinstance(caught.value.__cause__, TransientError)


def test_stop_event_already_set_does_not_call() -> None:
    stop = threading.Event()
    stop.set()
    calls, fn = flaky([])

    with pytest.raises(RetryStoppedError):
        retry_call(fn, classify=classify, backoff=Backoff(RetrySettings()), stop_event=stop)

    assert calls == []


def test_stop_event_set_from_another_thread_wakes_the_wait() -> None:
    stop = threading.Event()
    _calls, fn = flaky([TimeoutError("t")] * 100)
    backoff = Backoff(RetrySettings(initial=3600, maximum=3600, jitter=False))
    started = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            retry_call(fn, classify=classify, backoff=backoff, on_attempt=lambda a: started.set(), stop_event=stop)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(10)
    stop.set()
    worker.join(10)

    assert not worker.is_alive()
    assert isinstance(outcome[0], RetryStoppedError)


def test_without_a_stop_event_the_plain_sleep_is_used() -> None:
    calls, fn = flaky([TimeoutError("t")])

    result = retry_call(fn, classify=classify, backoff=Backoff(RetrySettings(initial=0.001, maximum=0.001)))

    assert result == "ok"
    assert len(calls) == 2
