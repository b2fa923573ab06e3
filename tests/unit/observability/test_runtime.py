"""The Observability facade: metrics and health change together; apply stats become metric increments."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog.testing
from prometheus_client.parser import text_string_to_metric_families

from mssql2pg.model import Operation, TableId
from mssql2pg.observability.health import Status
from mssql2pg.observability.metrics import OPERATIONS
from mssql2pg.observability.runtime import Observability
from mssql2pg.sink.applier import ApplyStats

ORDERS = TableId("dbo", "orders")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Stats:
    rows: dict[tuple[TableId, Operation], int] = field(default_factory=lambda: defaultdict(int))
    transactions: int = 0
    commits: int = 0
    last_commit_time: datetime | None = None
    last_batch_rows: int = 0
    last_batch_seconds: float = 0.0


def scrape(obs: Observability) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(obs.metrics.render().decode())
        for s in fam.samples
    }


def make() -> tuple[Observability, Clock, Clock]:
    mono, wall = Clock(100.0), Clock(T0.timestamp())
    return Observability(unhealthy_after=600, monotonic=mono, wall_clock=wall, process_metrics=False), mono, wall


def test_component_degrades_while_retrying_then_turns_unhealthy() -> None:
    obs, mono, _ = make()
    obs.component_ok("source")
    obs.component_ok("target")
    assert obs.health.readiness()[0] is Status.HEALTHY
    obs.component_failed("target", "connection refused")
    status, body = obs.health.readiness()
    assert status is Status.DEGRADED
    assert body["components"]["target"]["reason"].startswith("connection refused")
    assert scrape(obs)[("mssql2pg_component_up", frozenset({("component", "target")}))] == 0
    mono.now += 601
    obs.component_failed("target", "connection refused")
    assert obs.health.readiness()[0] is Status.UNHEALTHY
    obs.component_ok("target")
    assert obs.health.readiness()[0] is Status.HEALTHY
    assert scrape(obs)[("mssql2pg_component_up", frozenset({("component", "target")}))] == 1


def test_table_state_sets_metric_and_health() -> None:
    obs, _, _ = make()
    obs.table_state(ORDERS, "needs_resync", "checkpoint below the capture instance minimum LSN")
    assert obs.health.readiness()[1]["tables"]["dbo.orders"]["status"] == "unhealthy"
    key = ("mssql2pg_table_state", frozenset({("table", "dbo.orders"), ("state", "needs_resync")}))
    assert scrape(obs)[key] == 1


def test_apply_stats_become_exact_increments_and_lag() -> None:
    obs, _, wall = make()
    stats = Stats()
    stats.rows[(ORDERS, Operation.INSERT)] += 10
    stats.rows[(ORDERS, Operation.UPDATE_AFTER)] += 3
    stats.transactions, stats.commits = 2, 1
    stats.last_commit_time = T0 - timedelta(seconds=5)
    stats.last_batch_rows, stats.last_batch_seconds = 13, 0.02
    obs.record_apply_stats(stats)
    obs.record_apply_stats(stats)  # nothing new: nothing counted twice
    stats.rows[(ORDERS, Operation.INSERT)] += 1
    stats.transactions, stats.commits = 3, 2
    stats.last_batch_rows = 1
    obs.record_apply_stats(stats)
    wall.now += 10
    got = scrape(obs)
    assert got[("mssql2pg_rows_applied_total", frozenset({("table", "dbo.orders"), ("operation", "insert")}))] == 11
    assert got[("mssql2pg_rows_applied_total", frozenset({("table", "dbo.orders"), ("operation", "update")}))] == 3
    assert got[("mssql2pg_transactions_applied_total", frozenset())] == 3
    assert got[("mssql2pg_batch_rows_count", frozenset())] == 2
    assert got[("mssql2pg_batch_rows_sum", frozenset())] == 14
    assert got[("mssql2pg_lag_seconds", frozenset({("table", "dbo.orders")}))] == 15
    obs.heartbeat_applied(T0 + timedelta(seconds=9))
    assert scrape(obs)[("mssql2pg_lag_seconds", frozenset({("table", "dbo.orders")}))] == 1


def test_source_position_feeds_the_capture_age() -> None:
    obs, _, wall = make()
    obs.source_position(None)
    assert ("mssql2pg_source_max_lsn_age_seconds", frozenset()) not in scrape(obs)
    obs.source_position(T0)
    wall.now += 30
    assert scrape(obs)[("mssql2pg_source_max_lsn_age_seconds", frozenset())] == 30


def test_the_real_applier_stats_fit_the_protocol() -> None:
    obs, _, _ = make()
    stats = ApplyStats()
    stats.rows[(ORDERS, Operation.DELETE)] += 2
    obs.record_apply_stats(stats)
    assert (
        scrape(obs)[("mssql2pg_rows_applied_total", frozenset({("table", "dbo.orders"), ("operation", "delete")}))] == 2
    )


class SideError(Exception):
    def __init__(self, message: str, component: str) -> None:
        super().__init__(message)
        self.component = component


def test_retry_hooks_mark_retries_and_recovery() -> None:
    obs, mono, wall = make()
    stats = ApplyStats()
    stats.rows[(ORDERS, Operation.INSERT)] += 4
    stats.last_commit_time = T0
    obs.component_ok("source")
    obs.component_ok("target")
    obs.record_apply_stats(stats)
    obs.heartbeat_applied(T0 + timedelta(seconds=1))
    assert obs.health.readiness()[0] is Status.HEALTHY
    wall.now += 3
    got = scrape(obs)
    assert got[("mssql2pg_rows_applied_total", frozenset({("table", "dbo.orders"), ("operation", "insert")}))] == 4
    assert got[("mssql2pg_lag_seconds", frozenset({("table", "dbo.orders")}))] == 2

    obs.on_retry(1, 1.0, SideError("connection reset", "target"))
    obs.on_retry(2, 2.0, OSError("somewhere"))
    got = scrape(obs)
    assert got[("mssql2pg_retries_total", frozenset({("component", "target")}))] == 1
    assert got[("mssql2pg_retries_total", frozenset({("component", "pipeline")}))] == 1
    assert got[("mssql2pg_errors_total", frozenset({("table", ""), ("kind", "transient")}))] == 2
    status, body = obs.health.readiness()
    assert status is Status.DEGRADED
    assert "connection reset" in body["components"]["target"]["reason"]
    assert "somewhere" in body["components"]["pipeline"]["reason"]
    mono.now += 1
    assert obs.health.liveness()[0] is True
    obs.component_ok("target")  # the target answers again (ObservedSink) ...
    assert obs.health.readiness()[0] is Status.DEGRADED  # ... the error that named no side still shows ...
    obs.on_recovered()  # ... until the retry loop has made progress again
    assert obs.health.readiness()[0] is Status.HEALTHY


def test_alert_condition_is_logged_once_the_failure_lasts_alert_after() -> None:
    obs, mono, _ = make()
    with structlog.testing.capture_logs() as logs:
        obs.component_failed("source", "connection refused")
        mono.now += 599
        obs.component_failed("source", "connection refused")

        assert [e for e in logs if e["log_level"] == "error"] == []

        mono.now += 2
        obs.component_failed("source", "connection refused")
    errors = [e for e in logs if e["log_level"] == "error"]

    assert len(errors) == 1
    assert errors[0]["component_name"] == "source"
    assert errors[0]["failing_for_s"] == 601


def test_applied_rows_are_labelled_with_the_operations_whose_series_start_at_zero() -> None:
    """The runtime's labels for applied rows are exactly the operations :meth:`Metrics.init_tables` starts at 0."""
    obs = Observability(process_metrics=False)
    table = TableId("dbo", "t")
    stats = ApplyStats()
    for op in (Operation.INSERT, Operation.UPDATE_AFTER, Operation.DELETE):
        stats.rows[(table, op)] += 1
    obs.record_apply_stats(stats)
    labels = {
        s.labels["operation"]
        for family in text_string_to_metric_families(obs.metrics.render().decode())
        for s in family.samples
        if s.name == "mssql2pg_rows_applied_total"
    }
    assert labels == set(OPERATIONS)


def test_a_standby_is_alive_ready_and_says_it_is_a_standby() -> None:
    """Waiting for another process to release a group is not a failure: no alert however long it lasts, and
    /readyz names the standby."""
    obs, mono, _ = make()
    obs.component_ok("source")
    obs.component_failed("target", "connection refused")  # a failure before it became a standby is forgotten
    for _ in range(3):
        mono.now += 601
        obs.standby("dbo.a1 is being written by another connection")
    status, body = obs.health.readiness()
    assert status is Status.HEALTHY
    assert body["components"]["target"]["reason"] == "standby: dbo.a1 is being written by another connection"
    assert scrape(obs)[("mssql2pg_component_up", frozenset({("component", "target")}))] == 1
