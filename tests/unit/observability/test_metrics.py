"""The metrics module: names, labels, and lag that is right when busy, idle and when capture stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mssql2pg.model import TableId
from mssql2pg.observability.metrics import Metrics, exported_metric_names

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ORDERS = TableId("dbo", "orders")


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def metrics(clock: FakeClock) -> Metrics:
    return Metrics(clock=clock, process=False)


def test_every_exported_name_has_the_prefix_and_the_list_matches_a_real_scrape(metrics: Metrics) -> None:
    names = exported_metric_names()
    assert all(n.startswith("mssql2pg_") for n in names)
    assert "mssql2pg_process_cpu_seconds_total" in names
    assert "mssql2pg_process_resident_memory_bytes" in names
    metrics.rows_applied(ORDERS, "insert", 3)
    metrics.transaction_applied()
    metrics.error(ORDERS, "terminal")
    metrics.retry("source")
    metrics.dead_lettered(ORDERS)
    metrics.stale_event(ORDERS)
    metrics.set_schema_changes({(str(ORDERS), "pending-review"): 1})
    metrics.observe_batch(10, 0.2)
    metrics.set_queue_depth(4)
    metrics.set_table_state(ORDERS, "active")
    metrics.set_last_applied(ORDERS, T0)
    metrics.set_source_max_lsn_time(T0)
    metrics.reconciled(ORDERS, T0, {"missing": 1})
    metrics.set_group_writer("ga", True)
    metrics.set_snapshot_progress(ORDERS, 10, 100)
    metrics.set_retention_margin(ORDERS, 3600.0)
    metrics.target_conflict(ORDERS, "update_missing")
    scraped = {name for name, _ in samples(metrics) if not name.endswith("_created")}
    assert scraped <= names
    assert scraped >= names - {n for n in names if "_process_" in n}


def test_throughput_counters_carry_table_and_operation(metrics: Metrics) -> None:
    metrics.rows_applied(ORDERS, "INSERT", 5)
    metrics.rows_applied("dbo.orders", "delete", 2)
    metrics.transaction_applied(3)
    assert value(metrics, "mssql2pg_rows_applied_total", table="dbo.orders", operation="insert") == 5
    assert value(metrics, "mssql2pg_rows_applied_total", table="dbo.orders", operation="delete") == 2
    assert value(metrics, "mssql2pg_transactions_applied_total") == 3


def test_lag_while_busy_is_now_minus_last_applied_commit_time(metrics: Metrics, clock: FakeClock) -> None:
    metrics.set_last_applied(ORDERS, T0 - timedelta(seconds=30))
    clock.advance(10)
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 40
    assert value(metrics, "mssql2pg_last_applied_commit_age_seconds", table="dbo.orders") == 40


def test_lag_when_idle_follows_the_caught_up_source_time_not_the_last_change(
    metrics: Metrics, clock: FakeClock
) -> None:
    metrics.set_last_applied(ORDERS, T0)
    # An hour of idleness; the capture job keeps writing idle markers, heartbeats keep committing.
    for _ in range(60):
        clock.advance(60)
        moment = datetime.fromtimestamp(clock.now, UTC)
        metrics.set_source_max_lsn_time(moment - timedelta(seconds=2))
        metrics.set_caught_up(moment - timedelta(seconds=2))
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 2
    assert value(metrics, "mssql2pg_source_max_lsn_age_seconds") == 2
    assert value(metrics, "mssql2pg_last_applied_commit_age_seconds", table="dbo.orders") == 3600


def test_lag_grows_when_the_capture_job_stops(metrics: Metrics, clock: FakeClock) -> None:
    metrics.set_last_applied(ORDERS, T0)
    metrics.set_caught_up(T0)
    metrics.set_source_max_lsn_time(T0)
    clock.advance(900)  # no new max LSN, no heartbeat beyond T0
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 900
    assert value(metrics, "mssql2pg_source_max_lsn_age_seconds") == 900


def test_lag_is_never_negative_and_naive_times_are_utc(metrics: Metrics) -> None:
    metrics.set_last_applied(ORDERS, (T0 + timedelta(seconds=5)).replace(tzinfo=None))
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 0


def test_set_caught_up_can_announce_tables_without_changes(metrics: Metrics, clock: FakeClock) -> None:
    metrics.set_caught_up(T0, tables=[ORDERS])
    clock.advance(3)
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 3
    metrics.forget_table(ORDERS)
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") is None


def test_table_state_is_one_hot(metrics: Metrics) -> None:
    metrics.set_table_state(ORDERS, "active")
    metrics.set_table_state(ORDERS, "paused")
    assert value(metrics, "mssql2pg_table_state", table="dbo.orders", state="paused") == 1
    assert value(metrics, "mssql2pg_table_state", table="dbo.orders", state="active") == 0
    assert value(metrics, "mssql2pg_table_state", table="dbo.orders", state="needs_resync") == 0


def test_up_dead_letters_and_errors(metrics: Metrics) -> None:
    assert value(metrics, "mssql2pg_component_up", component="source") == 0
    metrics.set_up("source", True)
    assert value(metrics, "mssql2pg_component_up", component="source") == 1
    metrics.set_dead_letters({"pending": 7})
    assert value(metrics, "mssql2pg_dead_letters", status="pending") == 7
    assert value(metrics, "mssql2pg_dead_letters", status="ignored") == 0
    metrics.error(None, "transient")
    assert value(metrics, "mssql2pg_errors_total", table="", kind="transient") == 1


def test_registries_are_isolated() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.transaction_applied()
    assert value(b, "mssql2pg_transactions_applied_total") == 0


def test_process_metrics_are_on_the_private_registry() -> None:
    scraped = samples(Metrics())
    assert any(name == "mssql2pg_process_resident_memory_bytes" for name, _ in scraped)


def test_table_independent_counters_start_at_zero(metrics: Metrics) -> None:
    """Errors not about a table, and retries, have a series of every known label value from the first scrape."""
    for kind in ("transient", "terminal", "data", "schema"):
        assert value(metrics, "mssql2pg_errors_total", table="", kind=kind) == 0
    for component in ("source", "target", "pipeline"):
        assert value(metrics, "mssql2pg_retries_total", component=component) == 0


def test_every_per_table_counter_of_a_known_table_starts_at_zero(metrics: Metrics) -> None:
    """So the dashboard's rate() panels read 0 instead of "no data", and increase() sees the first event."""
    assert value(metrics, "mssql2pg_rows_applied_total", table="dbo.orders", operation="insert") is None
    metrics.init_tables([ORDERS, "sales.items"])
    for table in ("dbo.orders", "sales.items"):
        for operation in ("insert", "update", "delete"):
            assert value(metrics, "mssql2pg_rows_applied_total", table=table, operation=operation) == 0
        for kind in ("transient", "terminal", "data", "schema"):
            assert value(metrics, "mssql2pg_errors_total", table=table, kind=kind) == 0
        for status in ("auto-applied", "pending-review", "failed", "approved"):
            assert value(metrics, "mssql2pg_schema_changes", table=table, status=status) == 0
        assert value(metrics, "mssql2pg_dead_letters_routed_total", table=table) == 0
        assert value(metrics, "mssql2pg_stale_events_total", table=table) == 0
        for kind in ("update_missing", "delete_missing", "insert_exists", "foreign_lsn"):
            assert value(metrics, "mssql2pg_target_conflicts_total", table=table, kind=kind) == 0


def test_target_conflicts_are_counted_by_table_and_kind(metrics: Metrics) -> None:
    metrics.init_tables([ORDERS])
    metrics.target_conflict(ORDERS, "insert_exists", 2)
    assert value(metrics, "mssql2pg_target_conflicts_total", table="dbo.orders", kind="insert_exists") == 2
    assert value(metrics, "mssql2pg_target_conflicts_total", table="dbo.orders", kind="update_missing") == 0


def test_announcing_a_table_again_keeps_its_counts(metrics: Metrics) -> None:
    """A re-planned pipeline announces its tables again; what was counted stays."""
    metrics.init_tables([ORDERS])
    metrics.rows_applied(ORDERS, "update", 4)
    metrics.error(ORDERS, "data")
    metrics.init_tables([ORDERS])
    assert value(metrics, "mssql2pg_rows_applied_total", table="dbo.orders", operation="update") == 4
    assert value(metrics, "mssql2pg_errors_total", table="dbo.orders", kind="data") == 1


def test_a_reconcile_sets_its_time_and_every_kind_of_difference(metrics: Metrics) -> None:
    metrics.reconciled(ORDERS, T0, {"missing": 2, "different": 1})

    found = dict(samples(metrics))
    assert found[("mssql2pg_reconcile_last_run_timestamp_seconds", (("table", str(ORDERS)),))] == T0.timestamp()
    differing = {
        dict(labels)["kind"]: value for (name, labels), value in found.items()
        if name == "mssql2pg_reconcile_differing_rows"
    }  # fmt: skip
    assert differing == {"missing": 2, "extra": 0, "different": 1}


def test_clock_skew_is_exported_and_starts_at_zero(metrics: Metrics) -> None:
    assert value(metrics, "mssql2pg_clock_skew_seconds") == 0
    metrics.set_clock_skew(-7200.5, -7200.0)
    assert value(metrics, "mssql2pg_clock_skew_seconds") == -7200.5


def test_lag_of_a_source_whose_clock_is_ahead_is_corrected_not_zero(metrics: Metrics, clock: FakeClock) -> None:
    # The source clock is 1 h ahead: a change committed 40 s ago carries a commit time 3560 s in the future.
    metrics.set_last_applied(ORDERS, T0 + timedelta(seconds=3600 - 40))
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 0  # uncorrected: hidden
    metrics.set_clock_skew(3600, 3600)
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 40
    assert value(metrics, "mssql2pg_last_applied_commit_age_seconds", table="dbo.orders") == 40
    clock.advance(5)
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 45


def test_lag_of_a_source_whose_clock_is_behind_is_corrected_not_inflated(metrics: Metrics) -> None:
    metrics.set_last_applied(ORDERS, T0 - timedelta(days=2, seconds=3))  # 3 s ago on a clock 2 days behind
    metrics.set_source_max_lsn_time(T0 - timedelta(days=2, seconds=1))
    metrics.set_clock_skew(-172_800, -172_800)
    assert value(metrics, "mssql2pg_lag_seconds", table="dbo.orders") == 3
    assert value(metrics, "mssql2pg_source_max_lsn_age_seconds") == 1
    assert metrics.source_now() == (T0 - timedelta(days=2)).timestamp()


def test_retention_margin_appears_with_its_first_measurement_not_at_zero(metrics: Metrics) -> None:
    """0 would say "cleanup is about to pass this table": the series exists only once measured."""
    assert value(metrics, "mssql2pg_retention_margin_seconds", table=str(ORDERS)) is None
    metrics.set_retention_margin(ORDERS, -120.0)
    assert value(metrics, "mssql2pg_retention_margin_seconds", table=str(ORDERS)) == -120.0


def test_schema_changes_are_the_recorded_counts_so_a_status_can_go_down(metrics: Metrics) -> None:
    """A gauge of the control table's rows by table and status, not a count of what this process saw: an
    approval made by ``mssql2pg schema approve`` moves a change from pending-review to approved here too, and a
    series no longer in the counts reads 0."""
    metrics.init_tables([ORDERS])
    metrics.set_schema_changes({("dbo.orders", "pending-review"): 2, ("sales.items", "auto-applied"): 1})
    assert value(metrics, "mssql2pg_schema_changes", table="dbo.orders", status="pending-review") == 2
    assert value(metrics, "mssql2pg_schema_changes", table="sales.items", status="auto-applied") == 1
    metrics.set_schema_changes({("dbo.orders", "pending-review"): 1, ("dbo.orders", "approved"): 1})
    assert value(metrics, "mssql2pg_schema_changes", table="dbo.orders", status="pending-review") == 1
    assert value(metrics, "mssql2pg_schema_changes", table="dbo.orders", status="approved") == 1
    assert value(metrics, "mssql2pg_schema_changes", table="sales.items", status="auto-applied") == 0
