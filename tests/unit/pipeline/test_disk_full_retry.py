"""A full target disk (SQLSTATE 53100) is retried with backoff and said plainly: a log line that tells the
operator to free space, with the server's message, and ``/readyz`` leading with the cause (issue 17 point 2;
the real filesystem case is tests/e2e/test_target_disk_full.py)."""

from __future__ import annotations

import threading

import pg8000.exceptions
from structlog.testing import capture_logs

from mssql2pg.classify import is_disk_full
from mssql2pg.config import RetrySettings
from mssql2pg.observability import Observability
from mssql2pg.pipeline.observed import retry_policy

MESSAGE = 'could not extend file "pg_tblspc/16384/PG_16_202307071/16385/16390": No space left on device'


def disk_full() -> pg8000.exceptions.DatabaseError:
    return pg8000.exceptions.DatabaseError(
        {"S": "ERROR", "V": "ERROR", "C": "53100", "M": MESSAGE, "H": "Check free disk space."}
    )


def test_disk_full_is_recognised_behind_wrappers() -> None:
    assert is_disk_full(disk_full())
    wrapped = RuntimeError("apply failed")
    wrapped.__cause__ = disk_full()
    assert is_disk_full(wrapped)
    assert not is_disk_full(pg8000.exceptions.DatabaseError({"C": "40P01", "M": "deadlock detected"}))


def test_disk_full_is_retried_logged_with_the_server_message_and_shown_in_readyz() -> None:
    obs = Observability(process_metrics=False)
    retry = retry_policy(RetrySettings(initial=0.01, maximum=0.02, jitter=False), obs)
    calls = iter([disk_full(), disk_full(), None])

    def apply() -> str:
        error = next(calls)
        if error is not None:
            error.component = "target"  # type: ignore[attr-defined] - as ObservedSink tags it
            raise error
        return "applied"

    with capture_logs() as logs:
        assert retry.call(apply, threading.Event()) == "applied"

    lines = [e for e in logs if e["event"].startswith("target disk full: free space")]
    assert len(lines) == 2  # once per failed attempt, each with the server's own words
    assert all(e["server_message"] == MESSAGE for e in lines)
    assert [e["attempt"] for e in lines] == [1, 2]
    assert 'mssql2pg_retries_total{component="target"} 2.0' in obs.metrics.render().decode()


def test_readyz_reason_leads_with_the_cause() -> None:
    obs = Observability(process_metrics=False)
    retry = retry_policy(RetrySettings(initial=5, maximum=5, jitter=False), obs)
    error = disk_full()
    error.component = "target"  # type: ignore[attr-defined]
    retry.failed(error)
    target = obs.health.readiness()[1]["components"]["target"]
    assert target["status"] == "degraded"
    assert target["reason"].startswith("target disk full, free space: ")
    assert "No space left on device" in target["reason"]


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_disk_stays_failing_through_reconnects_so_the_alert_fires_and_progress_clears_it() -> None:
    clock = Monotonic()
    obs = Observability(process_metrics=False, monotonic=clock, unhealthy_after=10)
    retry = retry_policy(RetrySettings(initial=1, maximum=1, jitter=False), obs)

    def target_status() -> str:
        return str(obs.health.readiness()[1]["components"]["target"]["status"])

    for _ in range(3):  # each attempt: the target answers (start), then refuses the write again
        obs.component_ok("target")
        error = disk_full()
        error.component = "target"  # type: ignore[attr-defined]
        obs.component_failed("target", "apply failed")  # as ObservedSink reports it
        retry.failed(error)
        clock.now += 6
    assert target_status() == "unhealthy"  # failing for 12 s > unhealthy_after, despite three reconnects
    retry.recovered()  # the first commit after the space was freed
    assert target_status() == "healthy"
    obs.component_failed("target", "connection refused")  # an ordinary outage is cleared by a connect again
    obs.component_ok("target")
    assert target_status() == "healthy"


def test_component_up_stays_zero_while_the_disk_is_full() -> None:
    obs = Observability(process_metrics=False)
    retry = retry_policy(RetrySettings(initial=1, maximum=1, jitter=False), obs)
    error = disk_full()
    error.component = "target"  # type: ignore[attr-defined]
    retry.failed(error)
    obs.component_ok("target")  # the next attempt connects
    assert 'mssql2pg_component_up{component="target"} 0.0' in obs.metrics.render().decode()
    retry.recovered()
    assert 'mssql2pg_component_up{component="target"} 1.0' in obs.metrics.render().decode()
