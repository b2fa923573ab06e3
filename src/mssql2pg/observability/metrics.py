"""Every Prometheus metric the pipeline exports, defined once.

Names and label sets live here as constants so that dashboards, alert rules and docs can be checked against
one list (:func:`exported_metric_names`). Every name starts with ``mssql2pg_`` and carries its unit.

Each :class:`Metrics` owns its own ``CollectorRegistry`` (never the global one), so tests are isolated and two
pipelines in one process do not mix their numbers. The runner calls the typed methods; nothing else in the
code base touches ``prometheus_client`` directly.

Lag, exactly
------------
Two per-table gauges, both computed at scrape time (never stale, never "frozen" by a stuck loop):

``mssql2pg_last_applied_commit_age_seconds{table}``
    now − source commit time of the last change applied to ``table``. Simple, but on an idle table it grows
    forever, so it is not the one to alert on.

``mssql2pg_lag_seconds{table}`` (the idle-aware lag; alert on this one)
    now − *freshness*, where freshness = max(commit time of the last change applied to the table,
    source commit time up to which the pipeline is known to be caught up). The second term comes from
    :meth:`Metrics.set_caught_up`, which the runner calls when a checkpoint at a source position is committed
    (a ``Heartbeat``: "everything with a commit LSN ≤ X has been delivered"), passing the source commit time of
    X (``Heartbeat.source_time``). On an idle source SQL Server's capture job keeps writing idle marker rows to
    ``cdc.lsn_time_mapping``, so the max LSN and its time keep moving, heartbeats keep arriving and the lag
    stays around one polling interval instead of growing. When the capture job is stopped, no new LSN (and no
    marker) appears, the caught-up time stops moving and the lag grows, as it should: changes made since then
    are not in the target.

``mssql2pg_source_max_lsn_age_seconds``
    now − commit time of the source's max LSN (``sys.fn_cdc_get_max_lsn()`` mapped through
    ``lsn_time_mapping``). This is the "capture job is stopped / behind" signal: it grows when SQL Server stops
    capturing, independently of how fast the pipeline is.

Source commit times without a timezone are taken as UTC (the reader converts SQL Server's local
``datetime`` values).

Clock skew: ``mssql2pg_clock_skew_seconds`` is the source clock minus the target clock (positive: the source
is ahead), measured round-trip corrected by ``pipeline/clock.py``. The three ages above are computed with "now"
on the SOURCE's clock (this process's clock plus the measured source offset, :meth:`Metrics.set_clock_skew`),
since the commit times they subtract come from that clock. What remains negative after that (a measurement
error of a few milliseconds) is reported as 0.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mssql2pg.model import TARGET_CONFLICT_KINDS, TableId

PREFIX = "mssql2pg_"

# Label names.
LABEL_TABLE = "table"
LABEL_OPERATION = "operation"
LABEL_KIND = "kind"
LABEL_COMPONENT = "component"
LABEL_STATUS = "status"
LABEL_STATE = "state"
LABEL_VERSION = "version"
LABEL_GROUP = "group"

# Metric names (counters without the ``_total`` suffix, as prometheus_client wants them).
ROWS_APPLIED = "mssql2pg_rows_applied"
TRANSACTIONS_APPLIED = "mssql2pg_transactions_applied"
LAG_SECONDS = "mssql2pg_lag_seconds"
LAST_APPLIED_COMMIT_AGE_SECONDS = "mssql2pg_last_applied_commit_age_seconds"
SOURCE_MAX_LSN_AGE_SECONDS = "mssql2pg_source_max_lsn_age_seconds"
ERRORS = "mssql2pg_errors"
RETRIES = "mssql2pg_retries"
DEAD_LETTERS_ROUTED = "mssql2pg_dead_letters_routed"
DEAD_LETTERS = "mssql2pg_dead_letters"
STALE_EVENTS = "mssql2pg_stale_events"
SCHEMA_CHANGES = "mssql2pg_schema_changes"
BATCH_ROWS = "mssql2pg_batch_rows"
APPLY_DURATION_SECONDS = "mssql2pg_apply_duration_seconds"
QUEUE_DEPTH_ITEMS = "mssql2pg_queue_depth_items"
COMPONENT_UP = "mssql2pg_component_up"
TABLE_STATE = "mssql2pg_table_state"
BUILD_INFO = "mssql2pg_build_info"
RECONCILE_LAST_RUN_TIMESTAMP_SECONDS = "mssql2pg_reconcile_last_run_timestamp_seconds"
RECONCILE_DIFFERING_ROWS = "mssql2pg_reconcile_differing_rows"
GROUP_WRITER = "mssql2pg_group_writer"
SNAPSHOT_ROWS_LOADED = "mssql2pg_snapshot_rows_loaded"
SNAPSHOT_ROWS_ESTIMATED = "mssql2pg_snapshot_rows_estimated"
CLOCK_SKEW_SECONDS = "mssql2pg_clock_skew_seconds"
RETENTION_MARGIN_SECONDS = "mssql2pg_retention_margin_seconds"
# --- issue 17 point 1: writes to the target by someone else ---
TARGET_CONFLICTS = "mssql2pg_target_conflicts"  # {table, kind}: kind one of mssql2pg.model.TARGET_CONFLICT_KINDS
PROCESS_NAMESPACE = "mssql2pg"  # ProcessCollector → mssql2pg_process_cpu_seconds_total, …_resident_memory_bytes

# Label values the runner is expected to use (documented; other values are accepted). Every series of these
# known label sets is exported at 0 from the first scrape (tables: once :meth:`Metrics.init_tables` names
# them), so dashboards read 0 instead of "no data" and ``increase()`` sees the first event.
COMPONENTS = ("source", "target")
RETRY_COMPONENTS = (*COMPONENTS, "pipeline")  # "pipeline": a retry whose error names no side
OPERATIONS = ("insert", "update", "delete")
ERROR_KINDS = ("transient", "terminal", "data", "schema")
TABLE_STATES = ("active", "paused", "needs_resync", "snapshotting")
DEAD_LETTER_STATUSES = ("pending", "resolved", "ignored")  # as mssql2pg.dead_letters.status stores them
SCHEMA_CHANGE_STATUSES = ("auto-applied", "pending-review", "failed", "approved")  # as mssql2pg.schema_changes.status
RECONCILE_DIFFERENCE_KINDS = ("missing", "extra", "different")  # the key lists of `mssql2pg reconcile`

BATCH_ROWS_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
APPLY_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TableRef = TableId | str
Clock = Callable[[], float]


def _table_label(table: TableRef) -> str:
    return str(table)


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class _LagState:
    """What the lag collector needs; guarded by ``Metrics._lock``."""

    last_applied: dict[str, float]
    caught_up_at: float | None = None
    source_max_lsn_time: float | None = None
    source_offset: float = 0.0  # source clock minus this process's clock (seconds), see set_clock_skew


class _LagCollector(Collector):
    """Computes the three age gauges at scrape time from the latest known commit times."""

    def __init__(self, state: _LagState, lock: threading.Lock, clock: Clock) -> None:
        self._state = state
        self._lock = lock
        self._clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            now = self._clock() + self._state.source_offset  # "now" on the source's clock
            last_applied = dict(self._state.last_applied)
            caught_up_at = self._state.caught_up_at
            source_time = self._state.source_max_lsn_time
        lag = GaugeMetricFamily(
            LAG_SECONDS,
            "Idle-aware replication lag: now minus max(last applied commit time, caught-up source time).",
            labels=[LABEL_TABLE],
        )
        age = GaugeMetricFamily(
            LAST_APPLIED_COMMIT_AGE_SECONDS,
            "Now minus the source commit time of the last change applied to the table (grows when idle).",
            labels=[LABEL_TABLE],
        )
        for table, applied_at in sorted(last_applied.items()):
            age.add_metric([table], max(0.0, now - applied_at))
            fresh = applied_at if caught_up_at is None else max(applied_at, caught_up_at)
            lag.add_metric([table], max(0.0, now - fresh))
        source = GaugeMetricFamily(
            SOURCE_MAX_LSN_AGE_SECONDS,
            "Now minus the commit time of the source max LSN; grows when the capture job is stopped.",
        )
        if source_time is not None:
            source.add_metric([], max(0.0, now - source_time))
        return [lag, age, source]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Describing lets the registry check for duplicate names without calling collect().
        return [
            GaugeMetricFamily(LAG_SECONDS, "", labels=[LABEL_TABLE]),
            GaugeMetricFamily(LAST_APPLIED_COMMIT_AGE_SECONDS, "", labels=[LABEL_TABLE]),
            GaugeMetricFamily(SOURCE_MAX_LSN_AGE_SECONDS, ""),
        ]


class Metrics:
    """The pipeline's metrics, on a private registry. Thread-safe: the reader and applier threads may both call it.

    ``clock`` (seconds since the epoch) is injectable so lag tests need no sleeping.
    """

    def __init__(self, *, version: str = "unknown", clock: Clock = time.time, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._clock = clock
        self._lag = _LagState(last_applied={})
        self._table_states: dict[str, str] = {}
        r = self.registry
        self._rows_applied = Counter(
            ROWS_APPLIED, "Rows applied to the target.", [LABEL_TABLE, LABEL_OPERATION], registry=r
        )
        self._transactions = Counter(
            TRANSACTIONS_APPLIED, "Source transactions applied (committed) in the target.", registry=r
        )
        self._errors = Counter(
            ERRORS, "Errors by table (empty if none) and kind.", [LABEL_TABLE, LABEL_KIND], registry=r
        )
        self._retries = Counter(RETRIES, "Retry attempts after transient faults.", [LABEL_COMPONENT], registry=r)
        self._dead_letters_routed = Counter(
            DEAD_LETTERS_ROUTED, "Rows routed to the dead-letter table.", [LABEL_TABLE], registry=r
        )
        self._dead_letters = Gauge(DEAD_LETTERS, "Rows in the dead-letter table by status.", [LABEL_STATUS], registry=r)
        self._stale = Counter(STALE_EVENTS, "Changes older than stale_after when applied.", [LABEL_TABLE], registry=r)
        self._schema_changes = Gauge(
            SCHEMA_CHANGES,
            "Recorded source schema changes (mssql2pg.schema_changes) by table and current status.",
            [LABEL_TABLE, LABEL_STATUS],
            registry=r,
        )
        self._schema_change_series: set[tuple[str, str]] = set()
        self._batch_rows = Histogram(BATCH_ROWS, "Rows per applied batch.", buckets=BATCH_ROWS_BUCKETS, registry=r)
        self._apply_duration = Histogram(
            APPLY_DURATION_SECONDS,
            "Time to apply and commit one batch.",
            buckets=APPLY_DURATION_BUCKETS,
            registry=r,
        )
        self._queue_depth = Gauge(QUEUE_DEPTH_ITEMS, "Items waiting between reader and applier.", registry=r)
        self._up = Gauge(COMPONENT_UP, "1 when the component is reachable, else 0.", [LABEL_COMPONENT], registry=r)
        self._table_state = Gauge(
            TABLE_STATE, "1 for the table's current state, 0 for the others.", [LABEL_TABLE, LABEL_STATE], registry=r
        )
        self._reconciled_at = Gauge(
            RECONCILE_LAST_RUN_TIMESTAMP_SECONDS,
            "When `mssql2pg reconcile` last compared the table (Unix time).",
            [LABEL_TABLE],
            registry=r,
        )
        self._reconcile_differing = Gauge(
            RECONCILE_DIFFERING_ROWS,
            "Rows that differ between source and target at the last reconcile, by kind.",
            [LABEL_TABLE, LABEL_KIND],
            registry=r,
        )
        self._group_writer = Gauge(
            GROUP_WRITER,
            "1 while this process writes the table group, 0 while it waits as a standby ('' : no group).",
            [LABEL_GROUP],
            registry=r,
        )
        self._snapshot_loaded = Gauge(
            SNAPSHOT_ROWS_LOADED,
            "Rows of the table's initial snapshot committed so far (snapshot.mode: initial).",
            [LABEL_TABLE],
            registry=r,
        )
        self._snapshot_estimated = Gauge(
            SNAPSHOT_ROWS_ESTIMATED,
            "Rows the source table held when its initial snapshot (re)started (COUNT_BIG).",
            [LABEL_TABLE],
            registry=r,
        )
        self._clock_skew = Gauge(
            CLOCK_SKEW_SECONDS,
            "Source clock minus target clock, round-trip corrected (positive: the source is ahead).",
            registry=r,
        )
        self._retention_margin = Gauge(
            RETENTION_MARGIN_SECONDS,
            "Time until CDC cleanup removes the oldest change the table still needs (from its checkpoint, or the "
            "position a paused table holds); negative: already removed.",
            [LABEL_TABLE],
            registry=r,
        )
        # --- issue 17 point 1: writes to the target by someone else ---
        self._target_conflicts = Counter(
            TARGET_CONFLICTS,
            "Changes that met a row written in the target by someone else, by kind (see docs/operations.md).",
            [LABEL_TABLE, LABEL_KIND],
            registry=r,
        )
        build = Gauge(BUILD_INFO, "Always 1; the version is in the label.", [LABEL_VERSION], registry=r)
        build.labels(version).set(1)
        for component in COMPONENTS:
            self._up.labels(component).set(0)
        for status in DEAD_LETTER_STATUSES:
            self._dead_letters.labels(status).set(0)
        for component in RETRY_COMPONENTS:
            self._retries.labels(component)
        for kind in ERROR_KINDS:
            self._errors.labels("", kind)
        r.register(_LagCollector(self._lag, self._lock, clock))
        if process:
            ProcessCollector(namespace=PROCESS_NAMESPACE, registry=r)

    def init_tables(self, tables: Iterable[TableRef]) -> None:
        """Start every per-table counter of ``tables`` at 0 for each known label value (operations, error
        kinds, schema-change outcomes); counts already made are kept. The pipeline calls it with its plan."""
        for table in tables:
            label = _table_label(table)
            for operation in OPERATIONS:
                self._rows_applied.labels(label, operation)
            for kind in ERROR_KINDS:
                self._errors.labels(label, kind)
            for status in SCHEMA_CHANGE_STATUSES:
                self._schema_changes.labels(label, status)
                self._schema_change_series.add((label, status))
            self._dead_letters_routed.labels(label)
            self._stale.labels(label)
            for conflict in TARGET_CONFLICT_KINDS:
                self._target_conflicts.labels(label, conflict)

    # -- throughput -------------------------------------------------------------------------------------------
    def rows_applied(self, table: TableRef, operation: str, n: int = 1) -> None:
        """Count ``n`` rows applied; ``operation`` is ``insert`` | ``update`` | ``delete`` (``Operation`` names)."""
        if n:
            self._rows_applied.labels(_table_label(table), operation.lower()).inc(n)

    def transaction_applied(self, n: int = 1) -> None:
        self._transactions.inc(n)

    def observe_batch(self, rows: int, seconds: float) -> None:
        """One committed batch: its size in rows and how long applying and committing it took."""
        self._batch_rows.observe(rows)
        self._apply_duration.observe(seconds)

    def set_queue_depth(self, n: int) -> None:
        self._queue_depth.set(n)

    # -- lag ---------------------------------------------------------------------------------------------------
    def set_last_applied(self, table: TableRef, commit_time: datetime) -> None:
        """The source commit time of the newest change now committed in the target for ``table``."""
        with self._lock:
            label = _table_label(table)
            stamp = _epoch(commit_time)
            self._lag.last_applied[label] = max(stamp, self._lag.last_applied.get(label, stamp))

    def set_caught_up(self, source_time: datetime, tables: Iterable[TableRef] = ()) -> None:
        """Everything committed in the source up to ``source_time`` is in the target (a committed heartbeat).

        ``tables`` lists tables to start reporting lag for even if no change of theirs was applied yet.
        """
        stamp = _epoch(source_time)
        with self._lock:
            if self._lag.caught_up_at is None or stamp > self._lag.caught_up_at:
                self._lag.caught_up_at = stamp
            for table in tables:
                self._lag.last_applied.setdefault(_table_label(table), stamp)

    def set_source_max_lsn_time(self, commit_time: datetime) -> None:
        """The commit time (``lsn_time_mapping.tran_end_time``) of the source's current max LSN."""
        with self._lock:
            self._lag.source_max_lsn_time = _epoch(commit_time)

    def set_clock_skew(self, skew: float, source_offset: float) -> None:
        """A clock measurement: ``skew`` (source minus target, exported) and ``source_offset`` (source minus this
        process's clock, the correction the lag gauges apply to "now"), both in seconds."""
        self._clock_skew.set(skew)
        with self._lock:
            self._lag.source_offset = source_offset

    def set_retention_margin(self, table: TableRef, seconds: float) -> None:
        """How long until CDC cleanup removes the oldest change ``table`` still needs (``pipeline/retention.py``).
        Not started at 0 like the others: 0 would say "cleanup is about to pass it"; the series appears with the
        first measurement, shortly after the pipeline starts."""
        self._retention_margin.labels(_table_label(table)).set(seconds)

    def source_now(self) -> float:
        """The current time on the source's clock (seconds since the epoch), as last measured."""
        with self._lock:
            return self._clock() + self._lag.source_offset

    def forget_table(self, table: TableRef) -> None:
        """Stop reporting lag and state for a table that is no longer replicated."""
        label = _table_label(table)
        with self._lock:
            self._lag.last_applied.pop(label, None)
            state = self._table_states.pop(label, None)
        if state is not None:
            for known in {*TABLE_STATES, state}:
                with contextlib.suppress(KeyError):
                    self._table_state.remove(label, known)

    # -- errors and recovery -----------------------------------------------------------------------------------
    def error(self, table: TableRef | None, kind: str) -> None:
        """Count one error. ``kind``: ``transient`` | ``terminal`` | ``data`` | ``schema`` | …; table None if none."""
        self._errors.labels("" if table is None else _table_label(table), kind).inc()

    def retry(self, component: str) -> None:
        self._retries.labels(component).inc()

    def dead_lettered(self, table: TableRef, n: int = 1) -> None:
        self._dead_letters_routed.labels(_table_label(table)).inc(n)

    def set_dead_letters(self, counts: Mapping[str, int]) -> None:
        """Current rows in the dead-letter table per status (statuses not given are set to 0)."""
        for status in {*DEAD_LETTER_STATUSES, *counts}:
            self._dead_letters.labels(status).set(counts.get(status, 0))

    def stale_event(self, table: TableRef, n: int = 1) -> None:
        self._stale.labels(_table_label(table)).inc(n)

    def set_schema_changes(self, counts: Mapping[tuple[str, str], int]) -> None:
        """The rows of ``mssql2pg.schema_changes`` now, by (table, status): read from the control table (at
        start, after this process records a change, and at every control-schema poll), so that an approval
        made by ``mssql2pg schema approve`` in another process shows here too. A gauge, not a counter: an
        approval moves a change from one status to another. Series no longer counted read 0."""
        with self._lock:
            for key in self._schema_change_series - set(counts):
                self._schema_changes.labels(*key).set(0)
            for (table, status), n in counts.items():
                self._schema_changes.labels(table, status).set(n)
            self._schema_change_series |= set(counts)

    def target_conflict(self, table: TableRef, kind: str, n: int = 1) -> None:
        """``n`` changes of ``table`` met a row written in the target by someone else (``kind``: see
        :data:`mssql2pg.model.TARGET_CONFLICT_KINDS`)."""
        self._target_conflicts.labels(_table_label(table), kind).inc(n)

    # -- state ---------------------------------------------------------------------------------------------------
    def set_group_writer(self, group: str, writing: bool) -> None:
        """This process writes ``group`` (it holds its tables' write locks), or waits as its standby."""
        self._group_writer.labels(group).set(1 if writing else 0)

    def set_up(self, component: str, up: bool) -> None:
        """``component`` is ``source`` or ``target``."""
        self._up.labels(component).set(1 if up else 0)

    def set_table_state(self, table: TableRef, state: str) -> None:
        """``state`` is ``active`` | ``paused`` | ``needs_resync``: the current one is 1, the others 0."""
        label = _table_label(table)
        with self._lock:
            self._table_states[label] = state
        for known in {*TABLE_STATES, state}:
            self._table_state.labels(label, known).set(1 if known == state else 0)

    def set_snapshot_progress(self, table: TableRef, loaded: int, estimated: int | None) -> None:
        """An initial snapshot's committed rows and estimated total (the estimate stays unset while unknown)."""
        label = _table_label(table)
        self._snapshot_loaded.labels(label).set(loaded)
        if estimated is not None:
            self._snapshot_estimated.labels(label).set(estimated)

    def reconciled(self, table: TableRef, finished_at: datetime, differing: Mapping[str, int]) -> None:
        """A reconcile of ``table``: when it finished and how many rows differ per kind (missing, extra,
        different; kinds not given are 0). An alert on ``mssql2pg_reconcile_differing_rows > 0`` fires on drift;
        one on the timestamp's age fires when the scheduled reconcile stopped running."""
        label = _table_label(table)
        self._reconciled_at.labels(label).set(_epoch(finished_at))
        for kind in {*RECONCILE_DIFFERENCE_KINDS, *differing}:
            self._reconcile_differing.labels(label, kind).set(differing.get(kind, 0))

    # -- exposition ----------------------------------------------------------------------------------------------
    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


def exported_metric_names() -> frozenset[str]:
    """Every sample name a scrape of the pipeline can contain (what queries, alerts and dashboards may use).

    Counters appear as ``<name>_total``; histograms as ``_bucket``, ``_sum`` and ``_count``.
    """
    names: set[str] = set()
    for family in Metrics(process=True).registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return frozenset(names)
