from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from mssql2pg.classify import classify
from mssql2pg.config import RetrySettings
from mssql2pg.errors import ConfigError, TerminalError, TransientError
from mssql2pg.retry import Backoff, RetriesExhaustedError, Retry


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


class FakeStop(threading.Event):
    """A stop event whose waits return at once and are recorded (``set()`` still stops)."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.slept.append(timeout or 0.0)
        return self.is_set()


def retry(settings: RetrySettings | None = None, **hooks: Any) -> Retry:
    return Retry.from_settings(settings or RetrySettings(jitter=False), classify, **hooks)


def test_transient_errors_are_retried_until_success() -> None:
    stop = FakeStop()
    calls, fn = flaky([ConnectionResetError(104, "reset")] * 5)
    attempts: list[tuple[int, float, TransientError]] = []

    result = retry(on_retry=lambda n, delay, error: attempts.append((n, delay, error))).call(fn, stop)

    assert result == "ok"
    assert len(calls) == 6
    assert stop.slept == [1, 2, 4, 8, 16]
    assert [n for n, _, _ in attempts] == [1, 2, 3, 4, 5]
    assert all(isinstance(error, TransientError) for _, _, error in attempts)
    assert attempts[-1][1] == 16


def test_terminal_errors_are_not_retried() -> None:
    stop = FakeStop()
    calls, fn = flaky([ZeroDivisionError("bad row")])

    with pytest.raises(TerminalError) as caught:
        retry().call(fn, stop)

    assert len(calls) == 1
    assert stop.slept == []
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_an_error_of_mssql2pg_that_is_not_transient_is_raised_as_it_is() -> None:
    error = ConfigError("no table left", hint="add one")

    with pytest.raises(ConfigError) as caught:
        retry().call(flaky([error])[1], FakeStop())

    assert caught.value is error


def test_never_gives_up_by_default() -> None:
    calls, fn = flaky([TimeoutError("t")] * 500)

    assert retry(RetrySettings()).call(fn, FakeStop()) == "ok"
    assert len(calls) == 501


def test_max_attempts_stops_with_the_last_error() -> None:
    calls, fn = flaky([TimeoutError("t")] * 10)

    with pytest.raises(RetriesExhaustedError) as caught:
        retry(RetrySettings(max_attempts=3)).call(fn, FakeStop())

    assert len(calls) == 3
    assert isinstance(caught.value.__cause__, TransientError)
    assert "3 failed attempts" in str(caught.value)
    assert caught.value.hint


def test_giving_up_keeps_the_hint_of_the_last_error_when_it_has_one() -> None:
    """A refused certificate is not fixed by checking that the database is up: its own hint is what to do."""
    refused = TransientError("the target refused our certificate check", hint="set target.sslrootcert to its CA")
    refused.component = "target"  # type: ignore[attr-defined]
    _calls, fn = flaky([refused] * 3)

    with pytest.raises(RetriesExhaustedError) as caught:
        retry(RetrySettings(max_attempts=2)).call(fn, FakeStop())

    hint = caught.value.hint or ""
    assert "set target.sslrootcert to its CA" in hint
    assert "up and reachable" not in hint
    assert "resumes from the last committed checkpoint" in hint


def test_giving_up_without_a_hint_says_to_check_the_database_it_came_from() -> None:
    lost = ConnectionRefusedError(111, "refused")
    lost.component = "source"  # type: ignore[attr-defined]
    _calls, fn = flaky([lost] * 3)

    with pytest.raises(RetriesExhaustedError) as caught:
        retry(RetrySettings(max_attempts=2)).call(fn, FakeStop())

    assert "check that the source database is up and reachable" in (caught.value.hint or "")


def test_each_failed_attempt_is_one_log_line_with_the_attempt_and_the_next_delay() -> None:
    _calls, fn = flaky([ConnectionRefusedError(111, "refused")] * 3)
    with structlog.testing.capture_logs() as logs, pytest.raises(RetriesExhaustedError):
        retry(RetrySettings(jitter=False, max_attempts=3)).call(fn, FakeStop())

    lines = [e for e in logs if "attempt" in e]
    assert [(e["attempt"], e["log_level"]) for e in lines] == [(1, "warning"), (2, "warning"), (3, "error")]
    assert [e.get("next_delay_s") for e in lines] == [1, 2, None]
    assert all(e["max_attempts"] == 3 and e["error"] and e["component_name"] == "pipeline" for e in lines)


def test_the_side_an_error_came_from_is_kept_through_classification() -> None:
    error = ConnectionRefusedError(111, "refused")
    error.component = "target"  # type: ignore[attr-defined]
    named: list[object] = []

    retry(on_retry=lambda n, delay, classified: named.append(getattr(classified, "component", None))).failed(error)

    assert named == ["target"]


def test_recovery_starts_a_new_count_and_a_new_delay_sequence() -> None:
    recovered: list[int] = []
    policy = retry(RetrySettings(jitter=False, max_attempts=3), on_recovered=lambda: recovered.append(1))
    policy.recovered()
    assert recovered == []  # nothing had failed

    assert [policy.failed(TimeoutError("t")) for _ in range(2)] == [1, 2]
    policy.recovered()

    assert recovered == [1]
    assert policy.failures == 0
    assert policy.failed(TimeoutError("t")) == 1


def test_stop_requested_while_waiting_ends_the_call() -> None:
    stop = FakeStop()
    calls, fn = flaky([TimeoutError("t")] * 100)

    result = retry(on_retry=lambda n, delay, error: stop.set()).call(fn, stop)

    assert result is None
    assert len(calls) == 1


def test_stop_already_requested_does_not_call() -> None:
    stop = threading.Event()
    stop.set()
    calls, fn = flaky([])

    assert retry().call(fn, stop) is None
    assert calls == []


def test_stop_set_from_another_thread_wakes_the_wait() -> None:
    stop = threading.Event()
    _calls, fn = flaky([TimeoutError("t")] * 100)
    started = threading.Event()
    outcome: list[object] = []
    policy = retry(RetrySettings(initial=3600, maximum=3600, jitter=False), on_retry=lambda *_: started.set())

    worker = threading.Thread(target=lambda: outcome.append(policy.call(fn, stop)))
    worker.start()
    assert started.wait(10)
    stop.set()
    worker.join(10)

    assert not worker.is_alive()
    assert outcome == [None]
