"""Builds a running pipeline from a configuration: source reader, target applier, runner, metrics, health.

This is the one place that knows how the parts fit together; each part stays testable on its own. The
source and sink are wrapped so that every step reports to metrics and health without the reader or the
applier knowing about either.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg8000.native
import sqlalchemy as sa
import structlog

from mssql2pg import __version__
from mssql2pg.classify import classify
from mssql2pg.config import Config, TableSelection, load_config, resolve_tables
from mssql2pg.errors import TransientError
from mssql2pg.model import CaptureInstance, Heartbeat, Operation, ReaderItem, TableId
from mssql2pg.observability.health import Health, Status
from mssql2pg.observability.metrics import Metrics
from mssql2pg.pipeline.runner import ChangeSource, Runner, RunStats
from mssql2pg.positions import Lsn
from mssql2pg.retry import Backoff, FailureTracker
from mssql2pg.sink.applier import Applier, ApplySettings
from mssql2pg.sink.schema import TableOptions, TargetTable, build_target_table
from mssql2pg.source import statements
from mssql2pg.source.catalog import load_capture_instances, select_instances
from mssql2pg.source.reader import Reader, ReaderSettings

log = structlog.get_logger(component="pipeline")

# Dead peers are found by TCP keepalive rather than a socket timeout: a timeout would also cut a long but
# healthy statement (the set-based apply of a million-row transaction).
KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}


def source_engine(config: Config) -> sa.Engine:
    return sa.create_engine(config.source.sqlalchemy_url(), pool_pre_ping=True, pool_size=2, max_overflow=2)


def target_connector(config: Config) -> Any:
    params = config.target.pg8000_params()

    def connect() -> pg8000.native.Connection:
        conn = pg8000.native.Connection(**params)
        sock = getattr(conn, "_usock", None)
        if isinstance(sock, socket.socket):
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in KEEPALIVE.items():
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        return conn

    return connect


def discover(
    engine: sa.Engine, config: Config
) -> tuple[list[TableSelection], dict[TableId, tuple[CaptureInstance, ...]]]:
    """The selected tables and their capture instances, checked against what CDC has enabled."""
    with engine.connect() as conn:
        instances = load_capture_instances(conn)
    available = sorted({ci.source for ci in instances})
    selections = resolve_tables(config, available)
    if config.pipeline.group is not None:
        selections = [s for s in selections if s.group == config.pipeline.group]
    by_table = select_instances(instances, [s.source for s in selections])
    return selections, by_table


def target_tables(
    selections: Sequence[TableSelection], instances: Mapping[TableId, tuple[CaptureInstance, ...]]
) -> list[TargetTable]:
    tables: list[TargetTable] = []
    for sel in selections:
        options = TableOptions(
            target_schema=sel.target.schema,
            target_name=sel.target.name,
            naming=sel.naming,
            delete_mode=sel.delete_mode,
        )
        tables.extend(build_target_table(ci, options) for ci in instances[sel.source])
    return tables


@dataclass
class ObservedSource:
    """Reports source reachability and the source's max-LSN time while passing items through."""

    inner: ChangeSource
    metrics: Metrics
    health: Health

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        try:
            for item in self.inner.read(start_after, stop, until_caught_up=until_caught_up):
                self._up()
                if isinstance(item, Heartbeat) and item.source_time is not None:
                    self.metrics.set_source_max_lsn_time(item.source_time)
                yield item
            self._up()
        except Exception as exc:
            self.metrics.set_up("source", False)
            self.health.set_component("source", Status.DEGRADED, f"{type(exc).__name__}: {classify(exc)}")
            raise

    def _up(self) -> None:
        self.metrics.set_up("source", True)
        self.health.set_component("source", Status.HEALTHY)

    def close(self) -> None:
        self.inner.close()


@dataclass
class ObservedSink:
    """Publishes what the applier committed (rows, transactions, lag, batch timings) after every step."""

    inner: Applier
    metrics: Metrics
    health: Health
    tables: Sequence[TableId]
    _rows: dict[tuple[TableId, Operation], int] = field(default_factory=dict)
    _transactions: int = 0
    _commits: int = 0
    _heartbeat: Heartbeat | None = None

    def start(self) -> Lsn:
        try:
            checkpoint = self.inner.start()
        except Exception as exc:
            self._down(exc)
            raise
        self.metrics.set_up("target", True)
        self.health.set_component("target", Status.HEALTHY)
        for table in self.tables:
            self.metrics.set_table_state(table, "active")
            self.health.set_table(table, Status.HEALTHY)
        return checkpoint

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

    def close(self) -> None:
        self.inner.close()

    def _step(self, fn: Any, *args: Any) -> None:
        self.health.beat()
        try:
            fn(*args)
        except Exception as exc:
            self._down(exc)
            raise
        self._publish()

    def _down(self, exc: BaseException) -> None:
        error = classify(exc)
        if isinstance(error, TransientError):
            self.metrics.set_up("target", False)
            self.health.set_component("target", Status.DEGRADED, f"{type(exc).__name__}: {error}")

    def _publish(self) -> None:
        stats = self.inner.stats
        touched: set[TableId] = set()
        for key, total in list(stats.rows.items()):
            delta = total - self._rows.get(key, 0)
            if delta:
                table, op = key
                self.metrics.rows_applied(table, op.name, delta)
                self._rows[key] = total
                touched.add(table)
        if stats.transactions != self._transactions:
            self.metrics.transaction_applied(stats.transactions - self._transactions)
            self._transactions = stats.transactions
        if stats.commits != self._commits:
            self._commits = stats.commits
            self.metrics.observe_batch(stats.last_batch_rows, stats.last_batch_seconds)
            if stats.last_commit_time is not None:
                for table in touched:
                    self.metrics.set_last_applied(table, stats.last_commit_time)
        hb = self._heartbeat
        if hb is not None and hb.source_time is not None and stats.checkpoint >= hb.lsn:
            self.metrics.set_caught_up(hb.source_time, self.tables)
            self._heartbeat = None


@dataclass
class Pipeline:
    """A configured pipeline: ``run()`` replicates; ``stats``, ``metrics`` and ``health`` observe it."""

    config: Config
    engine: sa.Engine
    reader: Reader
    applier: Applier
    runner: Runner
    metrics: Metrics
    health: Health
    tables: list[TargetTable]
    failures: FailureTracker

    @classmethod
    def from_config_file(cls, path: str | Path | None, env: Mapping[str, str] = os.environ) -> Pipeline:
        return cls.from_config(load_config(path, env))

    @classmethod
    def from_config(cls, config: Config) -> Pipeline:
        metrics = Metrics(version=__version__)
        health = Health()
        engine = source_engine(config)
        selections, instances = discover(engine, config)
        tables = target_tables(selections, instances)
        reader = Reader.for_tables(
            engine,
            [s.source for s in selections],
            ReaderSettings(
                chunk_rows=config.reader.chunk_rows,
                page_rows=config.reader.page_rows,
                poll_interval=config.reader.poll_interval,
            ),
        )
        applier = Applier(
            target_connector(config),
            tables,
            config.pipeline.name,
            ApplySettings(
                group_max_rows=config.apply.max_batch_rows,
                group_max_delay=config.apply.max_batch_seconds,
                heartbeat_interval=config.apply.heartbeat_interval,
            ),
        )
        failures = FailureTracker(config.retry.alert_after)
        source_ids = [s.source for s in selections]
        runner = Runner(
            ObservedSource(reader, metrics, health),
            ObservedSink(applier, metrics, health, source_ids),
            classify,
            Backoff(config.retry).delays,
        )
        pipeline = cls(config, engine, reader, applier, runner, metrics, health, tables, failures)
        runner.on_retry = pipeline._on_retry
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
        try:
            return self.runner.run(stop, until_caught_up=until_caught_up)
        finally:
            self.applier.close()
            self.reader.close()

    def _on_retry(self, attempt: int, delay: float, error: BaseException) -> None:
        self.failures.failure(error)
        self.metrics.retry("source" if "source" in str(type(error)).lower() else "target")
        status = Status.UNHEALTHY if self.failures.alerting else Status.DEGRADED
        for component in ("source", "target"):
            current = self.health.readiness()[1]["components"].get(component, {})
            if current.get("status") != Status.HEALTHY.value:
                self.health.set_component(component, status, f"retrying (attempt {attempt}): {error}")

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
