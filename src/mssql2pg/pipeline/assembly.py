"""Builds a running pipeline from a configuration: source reader, target applier, runner, metrics, health.

This is the one place that knows how the parts fit together; each part stays testable on its own. The
source and sink are wrapped so that every step reports to metrics and health without the reader or the
applier knowing about either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pg8000.native
import sqlalchemy as sa
import structlog

from mssql2pg import __version__
from mssql2pg.classify import classify
from mssql2pg.config import Config, TableSelection, load_config, resolve_tables
from mssql2pg.errors import SourceError, TableFaultError, TransientError
from mssql2pg.model import CaptureInstance, Heartbeat, ReaderItem, TableId
from mssql2pg.observability import Observability
from mssql2pg.pipeline.reader_process import ChildLogging, ProcessSource
from mssql2pg.pipeline.runner import ChangeSource, Runner, RunStats
from mssql2pg.positions import Lsn
from mssql2pg.retry import Backoff
from mssql2pg.sink import control
from mssql2pg.sink.applier import Applier, ApplySettings
from mssql2pg.sink.deadletters import count_by_status
from mssql2pg.sink.schema import TableOptions, TargetTable, build_target_table
from mssql2pg.source import statements
from mssql2pg.source.catalog import load_capture_instances, select_instances
from mssql2pg.source.errors import TableShapeError
from mssql2pg.source.reader import Reader, ReaderSettings
from mssql2pg.source.validation import check_instance

log = structlog.get_logger(component="pipeline")

# Dead peers are found by TCP keepalive rather than a socket timeout: a timeout would also cut a long but
# healthy statement (the set-based apply of a million-row transaction).
KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
# Data sent but not acknowledged for this long (ms) closes the connection: bounds the case keepalive cannot
# see (a peer that stops acknowledging while we have queued data). An idle wait for a long statement sends
# nothing, so it is not cut. Linux only; elsewhere the option is skipped.
TCP_USER_TIMEOUT_MS = 30_000


def tune_socket(sock: object) -> None:
    """Keepalive and ``TCP_USER_TIMEOUT`` on a database connection's socket (each option where the OS has it)."""
    if not isinstance(sock, socket.socket):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (*KEEPALIVE.items(), ("TCP_USER_TIMEOUT", TCP_USER_TIMEOUT_MS)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def driver_socket(dbapi_connection: object) -> object:
    """The TCP socket under a driver connection: pg8000 keeps it in ``_usock``; python-tds in
    ``_tds_socket.sock`` (wrapped by its TLS layer as ``_transport`` when encrypted). ``None`` if not found."""
    sock = getattr(dbapi_connection, "_usock", None)
    if sock is None:
        sock = getattr(getattr(dbapi_connection, "_tds_socket", None), "sock", None)
        sock = getattr(sock, "_transport", sock)
    return sock


# Rows that may wait between reader and applier: the queue holds chunks, so its length is this over the chunk
# size. Enough to keep the applier busy while the reader fetches the next page, small enough for memory.
QUEUE_ROW_BUDGET = 40_000

# PostgreSQL type OID of ``timestamp``. pg8000 parses it with ``strptime``, which was a quarter of the reader's
# time on the emulator; ``fromisoformat`` reads PostgreSQL's output format directly and is many times faster.
PG_TIMESTAMP_OID = 1114


def _fast_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def source_engine(config: Config) -> sa.Engine:
    engine = sa.create_engine(
        config.source.sqlalchemy_url(),
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=2,
        connect_args=config.source.engine_connect_args(),
    )

    @sa.event.listens_for(engine, "connect")
    def _tune_socket(dbapi_connection: Any, _record: Any) -> None:
        tune_socket(driver_socket(dbapi_connection))

    if config.source.backend == "postgresql":

        @sa.event.listens_for(engine, "connect")
        def _register_adapters(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.register_in_adapter(PG_TIMESTAMP_OID, _fast_timestamp)

    return engine


def target_connector(config: Config) -> Any:
    params = config.target.pg8000_params()

    def connect() -> pg8000.native.Connection:
        conn = pg8000.native.Connection(**params)
        sock = driver_socket(conn)
        if isinstance(sock, socket.socket):
            sock.settimeout(None)
            tune_socket(sock)
        return conn

    return connect


def discover(
    engine: sa.Engine, config: Config, skip: Collection[str] = ()
) -> tuple[list[TableSelection], dict[TableId, tuple[CaptureInstance, ...]]]:
    """The selected tables and their capture instances, checked against what CDC has enabled.

    ``skip`` names source tables to leave out (paused or needing resync)."""
    with engine.connect() as conn:
        instances = load_capture_instances(conn)
    available = sorted({ci.source for ci in instances})
    selections = resolve_tables(config, available)
    if config.pipeline.group is not None:
        selections = [s for s in selections if s.group == config.pipeline.group]
    selections = [s for s in selections if str(s.source) not in skip]
    by_table = select_instances(instances, [s.source for s in selections])
    return selections, by_table


def build_reader(
    config: Config,
    tables: Sequence[TableId],
    engine: sa.Engine | None = None,
    starts: Mapping[TableId, Lsn] | None = None,
    *,
    until: Lsn | None = None,
) -> Reader:
    """The source reader for ``tables``. Module-level so that a spawned reader process can call it
    (:class:`~mssql2pg.pipeline.reader_process.ProcessSource` pickles it with its arguments). ``starts`` and
    ``until``: see :meth:`Reader.for_tables` (resynced tables)."""
    return Reader.for_tables(
        engine if engine is not None else source_engine(config),
        list(tables),
        ReaderSettings(
            chunk_rows=config.reader.chunk_rows,
            page_rows=config.reader.page_rows,
            poll_interval=config.reader.poll_interval,
        ),
        starts=starts,
        until=until,
    )


def apply_settings(config: Config) -> ApplySettings:
    """The applier's settings from ``apply:`` and ``stale_after`` (the pipeline's applier and a catch-up's)."""
    return ApplySettings(
        group_max_rows=config.apply.max_batch_rows,
        group_max_delay=config.apply.max_batch_seconds,
        heartbeat_interval=config.apply.heartbeat_interval,
        stale_after=config.stale_after,
    )


def pause_table(config: Config, obs: Observability, fault: TableFaultError) -> None:
    """Record a table fault: the table's state (``paused`` / ``needs-resync``) with reason and remediation in
    ``mssql2pg.table_state``, the ``mssql2pg_table_state`` metric and ``/readyz``, and an error log line."""
    reason = str(fault).split("\n  hint:")[0]
    conn = target_connector(config)()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)  # a table can be paused at the very first start
        control.set_table_state(
            conn, config.pipeline.name, str(fault.table), fault.state, reason=reason, remediation=fault.remediation
        )
        conn.run("COMMIT")
    finally:
        conn.close()
    obs.table_state(str(fault.table), fault.state.replace("-", "_"), reason)
    log.error(
        "table paused; the other tables go on",
        table=str(fault.table),
        state=fault.state,
        error_class=type(fault).__name__,
        reason=reason,
        remediation=fault.remediation,
    )


def usable_selections(
    selections: list[TableSelection], instances: Mapping[TableId, tuple[CaptureInstance, ...]]
) -> tuple[list[TableSelection], list[TableShapeError]]:
    """Read-side validation of the capture instances: the selections that can be applied by key, and the
    :class:`TableShapeError` of each one that cannot."""
    usable: list[TableSelection] = []
    faults: list[TableShapeError] = []
    for selection in selections:
        try:
            for ci in instances[selection.source]:
                check_instance(ci)
        except TableShapeError as fault:
            faults.append(fault)
            continue
        usable.append(selection)
    return usable, faults


def _pause_unusable(
    config: Config,
    obs: Observability,
    selections: list[TableSelection],
    instances: Mapping[TableId, tuple[CaptureInstance, ...]],
) -> list[TableSelection]:
    """At start-up, a table whose capture instance cannot be applied by key is paused instead of stopping
    every table; the usable selections are returned."""
    usable, faults = usable_selections(selections, instances)
    for fault in faults:
        pause_table(config, obs, fault)
    return usable


@dataclass(frozen=True)
class ControlState:
    """What the target's control schema says about the tables before a start."""

    inactive: dict[str, tuple[str, str]]  # paused or needing resync: source table -> (state, reason)
    positions: dict[str, Lsn]  # resynced tables: source table -> the LSN their changes resume after
    checkpoint: Lsn


def control_state(config: Config) -> ControlState:
    conn = target_connector(config)()
    try:
        name = config.pipeline.name
        checkpoint = (
            control.read_checkpoint(conn, name) if control.control_table_exists(conn, "checkpoints") else Lsn.NULL
        )
        return ControlState(control.inactive_tables(conn, name), control.resume_positions(conn, name), checkpoint)
    finally:
        conn.close()


def target_tables(
    selections: Sequence[TableSelection], instances: Mapping[TableId, tuple[CaptureInstance, ...]]
) -> list[TargetTable]:
    """One target table per selected source table, fed by all its capture instances (oldest first)."""
    return [
        build_target_table(
            instances[sel.source],
            TableOptions(
                target_schema=sel.target.schema,
                target_name=sel.target.name,
                naming=sel.naming,
                delete_mode=sel.delete_mode,
            ),
        )
        for sel in selections
    ]


def _tag(exc: BaseException, component: str) -> None:
    """Name the side an error came from, so retry reporting can say which database is failing."""
    if getattr(exc, "component", None) is None:
        with contextlib.suppress(AttributeError):
            exc.component = component  # type: ignore[attr-defined]


@dataclass
class ObservedSource:
    """Reports source reachability and the source's max-LSN time while passing items through."""

    inner: ChangeSource
    obs: Observability
    _reported_ok: bool = False  # report "source up" once per recovery, not once per item (hot path)

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        try:
            for item in self.inner.read(start_after, stop, until_caught_up=until_caught_up):
                if not self._reported_ok:
                    self.obs.component_ok("source")
                    self._reported_ok = True
                if isinstance(item, Heartbeat):
                    self.obs.source_position(item.source_time)
                yield item
        except Exception as exc:
            self._reported_ok = False
            _tag(exc, "source")
            self.obs.component_failed("source", f"{type(exc).__name__}: {classify(exc)}")
            raise

    def close(self) -> None:
        self.inner.close()


@dataclass
class ObservedSink:
    """Publishes what the applier committed (rows, transactions, lag, batch timings) after every step."""

    inner: Applier
    obs: Observability
    tables: Sequence[TableId]
    _heartbeat: Heartbeat | None = None
    connect: Any = None  # a target connector, for the dead-letter gauge
    _commits_seen: int = -1
    _dead_letters: dict[TableId, int] = field(default_factory=dict)
    _stale: dict[TableId, int] = field(default_factory=dict)

    def start(self) -> Lsn:
        checkpoint: Lsn = self._guard(self.inner.start)
        self.obs.component_ok("target")
        for table in self.tables:
            self.obs.table_state(table, "active")
        self._publish_dead_letter_counts()
        return checkpoint

    def _publish_dead_letter_counts(self) -> None:
        """The dead-letter gauge by status: read at start and whenever rows were dead-lettered (rare)."""
        if self.connect is None:
            return
        connection = self.connect()
        try:
            self.obs.metrics.set_dead_letters(count_by_status(connection, self.inner.pipeline))
        finally:
            connection.close()

    def offer(self, item: ReaderItem) -> None:
        if isinstance(item, Heartbeat):
            self._heartbeat = item
        self._step(self.inner.offer, item)

    def tick(self) -> None:
        self._step(self.inner.tick)

    def flush(self) -> None:
        self._step(self.inner.flush)

    def abandon(self) -> None:
        self.inner.abandon()

    def mid_transaction(self) -> bool:
        return self.inner.mid_transaction()

    def close(self) -> None:
        self.inner.close()

    @staticmethod
    def _publish_deltas(totals: Mapping[TableId, int], seen: dict[TableId, int], count: Any) -> bool:
        """Turn the applier's cumulative per-table counts into metric increments; True if any grew."""
        grew = False
        for table, total in list(totals.items()):
            delta = total - seen.get(table, 0)
            if delta > 0:
                count(table, delta)
                seen[table] = total
                grew = True
        return grew

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            _tag(exc, "target")
            if isinstance(classify(exc), TransientError):
                self.obs.component_failed("target", f"{type(exc).__name__}: {classify(exc)}")
            raise

    def _step(self, fn: Any, *args: Any) -> None:
        self.obs.beat()
        self._guard(fn, *args)
        stats = self.inner.stats
        if stats.commits == self._commits_seen:
            return  # nothing committed since the last step: nothing new to publish (the common case per item)
        self._commits_seen = stats.commits
        self.obs.record_apply_stats(stats)
        if self._publish_deltas(stats.dead_letters, self._dead_letters, self.obs.metrics.dead_lettered):
            self._publish_dead_letter_counts()
        self._publish_deltas(stats.stale, self._stale, self.obs.metrics.stale_event)
        hb = self._heartbeat
        if hb is not None and stats.checkpoint >= hb.lsn:
            self.obs.heartbeat_applied(hb.source_time, self.tables)
            self._heartbeat = None


CONTROL_POLL_SECONDS = 10.0
"""How often a running pipeline looks at the control schema for tables whose state changed."""


@dataclass
class ControlWatcher:
    """Sets ``replan`` when the control schema's table states no longer match what ``pipeline`` was built for:
    a table it replicates was paused (``mssql2pg resync`` pauses a table first and waits for the pipeline to
    leave it), or a table it left out is active again (the resync is done). The runner then stops at the next
    source-transaction boundary."""

    config: Config
    pipeline: Pipeline
    replan: threading.Event
    interval: float = field(default_factory=lambda: CONTROL_POLL_SECONDS)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ControlWatcher:
        self._thread = threading.Thread(target=self._watch, name="mssql2pg-control", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        replicated = {str(t.source) for t in self.pipeline.tables}
        left_out = self.pipeline.inactive_at_start
        while not self._done.wait(self.interval):
            try:
                inactive = set(control_state(self.config).inactive)
            except Exception as exc:  # the target is down: the runner reports and retries that
                log.debug("control schema not readable", error=str(exc))
                continue
            rejoined = left_out - inactive
            paused = replicated & inactive
            if rejoined or paused:
                log.info(
                    "table states changed; re-planning the pipeline at the next transaction boundary",
                    active_again=sorted(rejoined),
                    paused=sorted(paused),
                )
                self.replan.set()
                return


@dataclass
class Pipeline:
    """A configured pipeline: ``run()`` replicates; ``stats`` and ``obs`` (metrics, health, HTTP) observe it."""

    config: Config
    engine: sa.Engine
    reader: ChangeSource  # a Reader, or a ProcessSource running one in a process of its own
    applier: Applier
    runner: Runner
    obs: Observability
    tables: list[TargetTable]
    resume_positions: dict[str, Lsn] = field(default_factory=dict)  # resynced tables (see pipeline.resync)
    inactive_at_start: frozenset[str] = frozenset()  # tables left out because the control schema said so

    @classmethod
    def from_config_file(cls, path: str | Path | None, env: Mapping[str, str] = os.environ) -> Pipeline:
        return cls.from_config(load_config(path, env))

    @classmethod
    def from_config(cls, config: Config, obs: Observability | None = None) -> Pipeline:
        obs = obs or Observability(version=__version__, unhealthy_after=config.retry.alert_after)
        engine = source_engine(config)
        known = control_state(config)
        inactive = known.inactive
        for table, (state, reason) in inactive.items():
            obs.table_state(table, state.replace("-", "_"), reason)
            log.warning("table left out: it is not active", table=table, state=state, reason=reason)
        selections, instances = discover(engine, config, skip=inactive)
        selections = _pause_unusable(config, obs, selections, instances)
        if not selections:
            msg = "no table left to replicate: every selected table is paused or needs a resync"
            raise SourceError(msg, hint="see `mssql2pg check` and the mssql2pg.table_state table in the target")
        tables = target_tables(selections, instances)
        source_ids = [s.source for s in selections]
        starts = {s: known.positions[str(s)] for s in source_ids if str(s) in known.positions}
        positions = {str(s): p for s, p in starts.items()}
        reader: ChangeSource = (
            ProcessSource(
                functools.partial(build_reader, config, source_ids, starts=starts),
                ChildLogging(config.log.level, config.log.format, tuple(config.secrets())),
            )
            if config.reader.separate_process
            else build_reader(config, source_ids, engine, starts)
        )
        applier = Applier(
            target_connector(config),
            tables,
            config.pipeline.name,
            apply_settings(config),
            checkpoints=control.PipelineCheckpoint(config.pipeline.name, dict(positions)),
        )
        runner = Runner(
            ObservedSource(reader, obs),
            ObservedSink(applier, obs, source_ids, connect=target_connector(config)),
            classify,
            Backoff(config.retry).delays,
            queue_size=max(2, QUEUE_ROW_BUDGET // config.reader.chunk_rows),
            on_retry=obs.on_retry,
        )
        pipeline = cls(
            config,
            engine,
            reader,
            applier,
            runner,
            obs,
            tables,
            positions,
            frozenset(inactive),
        )
        log.info(
            "pipeline configured",
            source=config.source.redacted_url(),
            target=config.target.redacted_url(),
            tables=[str(s.source) for s in selections],
        )
        return pipeline

    @property
    def stats(self) -> RunStats:
        return self.runner.stats

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:
        """Replicate; a table fault (an LSN gap: ``needs-resync``; a change table that does not match its capture
        instance: ``paused``) pauses only its table, and the others go on in a pipeline rebuilt without it.

        Running continuously, the pipeline also notices when a table's state changes in the control schema (a
        ``mssql2pg resync`` paused a table, or made one active again) and re-plans: it commits what it has at the
        next source-transaction boundary and starts again with the new set of tables."""
        pipeline = self
        while True:
            replan = threading.Event()
            pipeline.runner.replan = replan
            watcher = None if until_caught_up else ControlWatcher(self.config, pipeline, replan).start()
            try:
                if pipeline._catch_up(stop):
                    stats = pipeline._run_once(stop, until_caught_up)
                    if until_caught_up or stop.is_set():
                        return stats
            except TableFaultError as fault:
                pipeline._pause(fault)
            finally:
                if watcher is not None:
                    watcher.close()
            if stop.is_set():
                return pipeline.runner.stats
            pipeline = self._replace(pipeline)

    def _replace(self, old: Pipeline) -> Pipeline:
        """A pipeline for the tables as the control schema now has them; ``self`` keeps pointing at its parts."""
        replacement = Pipeline.from_config(self.config, obs=self.obs)
        replacement.runner.stats = old.runner.stats
        self.tables, self.runner, self.applier, self.reader = (
            replacement.tables,
            replacement.runner,
            replacement.applier,
            replacement.reader,
        )
        return replacement

    def _catch_up(self, stop: threading.Event) -> bool:
        """Resynced tables behind the checkpoint catch up first (see :func:`~mssql2pg.pipeline.resync.catch_up`).
        False when a stop request ended it early."""
        if not self.resume_positions:
            return True
        from mssql2pg.pipeline.resync import catch_up  # noqa: PLC0415 - resync imports this module

        checkpoint = control_state(self.config).checkpoint
        catch_up(self.config, self.engine, self.tables, self.resume_positions, checkpoint, stop)
        return not stop.is_set()

    def _run_once(self, stop: threading.Event, until_caught_up: bool) -> RunStats:
        try:
            return self.runner.run(stop, until_caught_up=until_caught_up)
        finally:
            self.applier.close()
            self.reader.close()

    def _pause(self, fault: TableFaultError) -> None:
        pause_table(self.config, self.obs, fault)

    def source_max_lsn(self) -> Lsn:
        with self.engine.connect() as conn:
            return Lsn.from_bytes(conn.execute(statements.MAX_LSN).scalar())

    def wait_caught_up(self, timeout: float) -> bool:
        """Wait until the committed checkpoint reaches the source's max LSN (as it is now)."""
        target = self.source_max_lsn()
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while time.monotonic() < deadline:
            if self.applier.stats.checkpoint >= target:
                return True
            pause.wait(0.05)
        return False
