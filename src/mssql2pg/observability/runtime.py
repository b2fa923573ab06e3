"""One object the runner holds: metrics, health and the HTTP server, updated together.

Why a facade: most pipeline events change a metric *and* the health model (a lost source connection is
``mssql2pg_component_up{component="source"} 0`` and a ``degraded`` source in ``/readyz``). Doing both in one
call keeps them from disagreeing, and keeps the runner's wiring to a handful of lines::

    obs = Observability(version=__version__, unhealthy_after=cfg.retry.alert_after)
    obs.serve(cfg.http.host, cfg.http.port)
    ...
    retry = Retry.from_settings(cfg.retry, classify, on_retry=obs.on_retry, on_recovered=obs.on_recovered)
    # and, as the pipeline's steps happen:
    obs.beat()                                  # every loop turn, also when idle
    obs.component_ok("source") / obs.component_failed("target", str(exc))
    obs.record_apply_stats(applier.stats)       # after offer()/tick()/flush()
    obs.heartbeat_applied(hb.source_time, hb.tables)
    obs.table_state(table, "paused", reason)
    ...
    obs.close()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from mssql2pg.model import Operation, TableId
from mssql2pg.observability.health import DEFAULT_LIVENESS_TIMEOUT, Health, Status
from mssql2pg.observability.http import DEFAULT_HOST, DEFAULT_PORT, ObservabilityServer
from mssql2pg.observability.logging import get_logger
from mssql2pg.observability.metrics import Metrics

log = get_logger("observability")

DEFAULT_UNHEALTHY_AFTER = 600.0  # retry.alert_after: a component failing this long is unhealthy

# How a table state shows in /readyz (the overall roll-up caps tables at "degraded").
TABLE_STATE_HEALTH = {
    "active": Status.HEALTHY,
    "paused": Status.DEGRADED,
    "needs_resync": Status.UNHEALTHY,
    "snapshotting": Status.HEALTHY,  # loading as designed; the reason says how far
}

_OPERATION_LABELS = {
    Operation.INSERT: "insert",
    Operation.UPDATE_AFTER: "update",
    Operation.DELETE: "delete",
}


class ApplyStatsLike(Protocol):
    """What :meth:`Observability.record_apply_stats` reads (``mssql2pg.sink.applier.ApplyStats``): cumulative."""

    @property
    def rows(self) -> Mapping[tuple[TableId, Operation], int]: ...
    @property
    def transactions(self) -> int: ...
    @property
    def commits(self) -> int: ...
    @property
    def last_commit_time(self) -> datetime | None: ...
    @property
    def last_batch_rows(self) -> int: ...
    @property
    def last_batch_seconds(self) -> float: ...


class Observability:
    """Metrics + health + HTTP server. Thread-safe."""

    def __init__(
        self,
        *,
        version: str = "unknown",
        unhealthy_after: float = DEFAULT_UNHEALTHY_AFTER,
        liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        process_metrics: bool = True,
    ) -> None:
        self.metrics = Metrics(version=version, clock=wall_clock, process=process_metrics)
        self.health = Health(liveness_timeout=liveness_timeout, clock=monotonic)
        self.server = ObservabilityServer(self.metrics, self.health)
        self.unhealthy_after = unhealthy_after
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failing_since: dict[str, float] = {}
        self._until_progress: set[str] = set()  # failing until the pipeline commits again, not until it connects
        self._seen_rows: dict[tuple[TableId, Operation], int] = {}
        self._seen_transactions = 0
        self._seen_commits = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def serve(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
        """Start ``/metrics``, ``/healthz``, ``/readyz`` on ``host:port``; returns the bound port."""
        return self.server.start(host, port)

    def close(self) -> None:
        self.server.stop()

    def beat(self) -> None:
        """The main loop is alive (drives ``/healthz``)."""
        self.health.beat()

    # -- components --------------------------------------------------------------------------------------------
    def component_ok(self, name: str) -> None:
        """``name`` (``source`` | ``target``) answered: up, healthy. A component whose fault only progress can
        disprove (a full disk: the target answers, then refuses the write again) stays failing, so its failing
        time keeps counting toward the alert; :meth:`on_recovered` clears it."""
        with self._lock:
            if name in self._until_progress:
                return  # answering is not enough: component_up stays 0, so the unreachable alert can fire too
            self._failing_since.pop(name, None)
        self.metrics.set_up(name, True)
        self.health.set_component(name, Status.HEALTHY)

    def standby(self, reason: str) -> None:
        """Another process writes this one's tables; it waits to take over. Alive and reachable, and ``/readyz``
        says so (the target component is healthy, its reason starts with ``standby``): waiting is a standby's
        job, not a failure to alert on."""
        with self._lock:
            self._failing_since.pop("target", None)
        self.metrics.set_up("target", True)
        self.health.set_component("target", Status.HEALTHY, f"standby: {reason}")
        self.health.beat()

    def component_failed(self, name: str, reason: str) -> None:
        """``name`` is unreachable. Degraded while retrying, unhealthy once it has lasted ``unhealthy_after``."""
        now = self._monotonic()
        with self._lock:
            since = self._failing_since.setdefault(name, now)
        failing_for = now - since
        status = Status.UNHEALTHY if failing_for >= self.unhealthy_after else Status.DEGRADED
        self.metrics.set_up(name, False)
        self.health.set_component(name, status, f"{reason} (failing for {failing_for:.0f}s, retrying)")
        if status is Status.UNHEALTHY:
            # the alert condition: metric (component_up 0, alert rules), health (unhealthy) and this log line
            log.error(
                "component failing beyond the alert threshold; still retrying, nothing is dropped",
                component_name=name,
                failing_for_s=round(failing_for),
                alert_after_s=self.unhealthy_after,
                reason=reason,
            )

    # -- clocks ------------------------------------------------------------------------------------------------
    def clock_measured(self, skew: float, source_offset: float) -> None:
        """The source clock was measured: ``skew`` = source minus target, ``source_offset`` = source minus this
        process's clock (seconds). Lag and :meth:`source_now` correct for it from now on."""
        self.metrics.set_clock_skew(skew, source_offset)

    def source_now(self) -> datetime:
        """Now on the source's clock (aware, UTC): the applier's reference for stale events."""
        return datetime.fromtimestamp(self.metrics.source_now(), UTC)

    # -- tables ------------------------------------------------------------------------------------------------
    def table_state(self, table: TableId | str, state: str, reason: str = "") -> None:
        """``state``: ``active`` | ``paused`` | ``needs_resync`` (metric and ``/readyz`` together)."""
        self.metrics.set_table_state(table, state)
        self.health.set_table(table, TABLE_STATE_HEALTH.get(state, Status.DEGRADED), reason)

    def snapshot_progress(self, table: TableId | str, loaded: int, estimated: int | None) -> None:
        """An initial snapshot's progress: the metrics, and ``snapshotting`` with the counts in ``/readyz``."""
        self.metrics.set_snapshot_progress(table, loaded, estimated)
        of = f" of ~{estimated:,}" if estimated is not None else ""
        self.table_state(table, "snapshotting", f"snapshotting: {loaded:,}{of} rows loaded")

    def forget_table(self, table: TableId | str) -> None:
        self.metrics.forget_table(table)
        self.health.remove_table(table)

    # -- progress ------------------------------------------------------------------------------------------------
    def record_apply_stats(self, stats: ApplyStatsLike) -> None:
        """Turn the applier's cumulative stats into metric increments (call after every offer/tick/flush).

        Rows and transactions are exact. The batch histograms get the last batch once per call that saw new
        commits (the applier keeps only the last one). Tables with new rows get the last commit time for lag.
        """
        with self._lock:
            changed_tables: set[TableId] = set()
            for key, count in list(stats.rows.items()):
                delta = count - self._seen_rows.get(key, 0)
                if delta > 0:
                    self._seen_rows[key] = count
                    table, operation = key
                    label = _OPERATION_LABELS.get(operation)
                    if label is not None:
                        self.metrics.rows_applied(table, label, delta)
                    changed_tables.add(table)
            transactions = stats.transactions - self._seen_transactions
            self._seen_transactions = stats.transactions
            new_commits = stats.commits > self._seen_commits
            self._seen_commits = stats.commits
        if transactions > 0:
            self.metrics.transaction_applied(transactions)
        if new_commits and stats.last_batch_rows:
            self.metrics.observe_batch(stats.last_batch_rows, stats.last_batch_seconds)
        if stats.last_commit_time is not None:
            for table in changed_tables:
                self.metrics.set_last_applied(table, stats.last_commit_time)

    def heartbeat_applied(self, source_time: datetime | None, tables: Iterable[TableId] = ()) -> None:
        """A heartbeat reached the target: caught up to the source position whose commit time is ``source_time``.

        Without a source time nothing changes (lag then follows the last applied change, the safe side).
        """
        if source_time is not None:
            self.metrics.set_caught_up(source_time, tables)

    # -- retry hooks (``Retry(on_retry=..., on_recovered=...)``, see ``pipeline.observed.retry_policy``) ---------
    def on_retry(
        self,
        attempt: int,
        delay: float,
        error: BaseException,
        *,
        cause: str | None = None,
        until_progress: bool = False,
    ) -> None:
        """A transient fault ended an attempt. Counts the retry and the error; the loop is still alive.

        If the error names its side (an attribute ``component`` = ``source`` | ``target``), that component turns
        degraded (unhealthy after ``unhealthy_after``); otherwise a ``pipeline`` component does, so ``/readyz``
        never hides a retry loop. :meth:`on_recovered` clears it once the pipeline makes progress again (source and
        target are cleared by their own success reports, :meth:`component_ok`). ``cause`` (e.g. ``target disk
        full``) leads the reason ``/readyz`` shows, so the operator reads what to fix first. ``until_progress``:
        the side stays failing (its failing time counting toward ``unhealthy_after``) through reconnects, until
        the pipeline commits again, for faults a successful connect does not end (a full disk).
        """
        named = getattr(error, "component", None)
        component = named if named in ("source", "target") else "pipeline"
        self.beat()
        self.metrics.error(None, "transient")
        self.metrics.retry(component)
        lead = f"{cause}: " if cause else ""
        if until_progress and component != "pipeline":
            with self._lock:
                self._until_progress.add(component)
        self.component_failed(
            component, f"{lead}{type(error).__name__}: {error} (attempt {attempt}, next in {delay:.1f}s)"
        )

    def on_recovered(self) -> None:
        """The retry loop made progress again after transient faults: a ``pipeline`` component that
        :meth:`on_retry` marked failing is healthy again, and so is a side failing "until progress"."""
        with self._lock:
            pipeline_failing = "pipeline" in self._failing_since
            waiting = sorted(self._until_progress)
            self._until_progress.clear()
        if pipeline_failing:
            self.component_ok("pipeline")
        for name in waiting:
            self.component_ok(name)

    def source_position(self, max_lsn_time: datetime | None) -> None:
        """The source's max LSN commit time, each time the reader polls it (drives the capture-stalled alert)."""
        if max_lsn_time is not None:
            self.metrics.set_source_max_lsn_time(max_lsn_time)
