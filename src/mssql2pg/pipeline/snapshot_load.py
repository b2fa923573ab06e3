"""The initial snapshot (``snapshot.mode: initial``): a table the pipeline meets for the first time is loaded
from the source table, then streams from the snapshot LSN on, while the other tables keep streaming.

It is ``mssql2pg resync`` run by the pipeline itself, in chunks that each commit on their own (a resync loads a
table in one transaction; a first load of a large table must survive a kill -9 without starting over):

1. Snapshot LSN ``S`` = the source's max LSN, read before the first row and recorded in ``mssql2pg.snapshots``
   (state ``loading``) in the transaction that also marks the table ``paused`` in ``table_state``: every
   pipeline process then leaves it out of streaming, and a restart finds the load and resumes it.
2. Chunks of ``snapshot.chunk_rows`` rows in key order, each read by one short query after the last key
   committed, written through the applier as rows at ``S`` (COPY into staging, set-based upsert guarded by the
   LSN, dead letters for refused rows) and committed in ONE PostgreSQL transaction with the progress row (last
   key, rows loaded). A kill -9 loses at most the chunk in flight; the restart continues after the last key.
3. The last chunk's transaction also removes target rows older than ``S`` (a target table that existed before),
   marks the table ``active`` with ``resume_after = S`` (exactly as a resync commit) and the load ``done``.
4. The pipeline re-plans: the table streams from ``S``, first catching up to the group checkpoint on its own
   (:mod:`mssql2pg.pipeline.catchup`) when the other tables went further meanwhile.

Why no change is lost or applied out of order: a row read at any moment after ``S`` holds the state of some
moment after ``S``; streaming replays every change after ``S`` in commit order over it, and the applier's LSN
guard never lets an older change overwrite a later one, so the table converges to the source, as after a
resync. Until the group checkpoint has passed ``consistent_lsn`` (the source's max LSN read after the last
chunk) the table may show a mix of moments: ``status`` calls it snapshotting until then.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import sqlalchemy as sa
import structlog

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.model import CaptureInstance, Operation, TableId, TxChunk
from mssql2pg.observability import Observability
from mssql2pg.pgconn import PgConnection
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.positions import Lsn
from mssql2pg.sink import statements as sql
from mssql2pg.sink.applier import Applier, ApplySettings
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source.snapshot import count_rows, read_page, snapshot_lsn

log = structlog.get_logger(component="snapshot")

SNAPSHOT_REASON = "initial snapshot loading"
RETRY_MAX_SECONDS = 30.0


class StopLoading(Exception):  # noqa: N818 - a signal, not an error
    """The pipeline stops or re-plans: the chunk in flight is rolled back; a later start resumes after the last
    committed one."""


class LoadedElsewhere(Exception):  # noqa: N818 - a signal, not an error
    """Another process of the pipeline loaded the table while this one waited for it."""


@dataclass
class ChunkProgress:
    """The applier's :class:`~mssql2pg.control.CheckpointStore` during an initial snapshot: each commit moves the
    table's progress row instead of the pipeline checkpoint; the last one finishes the load (see the module
    docstring)."""

    pipeline: str
    table: TargetTable
    group: str
    stop: Callable[[], bool]
    rows_loaded: int = 0  # committed so far
    pending_key: tuple[Any, ...] | None = None
    pending_rows: int = 0
    final: bool = False
    consistent: Lsn = Lsn.NULL
    removed: int = field(default=0, init=False)

    def read(self, conn: PgConnection) -> Lsn:
        return Lsn.NULL  # every chunk carries the snapshot LSN; progress is by key

    def adopt(self, conn: PgConnection, tables: Sequence[str]) -> dict[str, Lsn]:
        return {}

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        """Wait until no other process writes the table (another process of the pipeline loading it). When that
        process finished the load meanwhile (it then streams the table and keeps its lock), this one is done."""
        (table,) = tables
        pause = threading.Event()
        while not control.try_claim_table(conn, self.pipeline, table):
            if self.stop():
                raise StopLoading
            progress = control.read_snapshot_progress(conn, self.pipeline, table)
            if progress is not None and not progress.loading:
                raise LoadedElsewhere
            log.debug("another process loads the table; waiting", table=table)
            pause.wait(1.0)

    def begin(self, conn: PgConnection) -> None:
        if self.final:  # readers see the old rows of a pre-existing table until the load is complete
            conn.run(sql.lock_for_resync(self.table))

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None:
        source = str(self.table.source)
        total = self.rows_loaded + self.pending_rows
        if self.pending_key is not None:
            control.advance_snapshot(conn, self.pipeline, source, self.pending_key, total)
        if not self.final:
            return
        params: dict[str, Any] = {"lsn": lsn.raw}
        if self.table.delete_mode == "soft":
            params["commit_time"] = commit_time.replace(tzinfo=None) if commit_time is not None else None
        conn.run(sql.remove_outside_snapshot(self.table), **params)
        self.removed = max(conn.row_count, 0)
        control.mark_resynced(
            conn,
            self.pipeline,
            source_table=source,
            capture_instance=self.table.capture_instance.name,
            target_table=f"{self.table.schema}.{self.table.name}",
            # A snapshot of a source that had captured nothing yet (Lsn.ZERO) needs no position of its own: the
            # group checkpoint is NULL too, and streaming reads the capture instance from its start.
            lsn=Lsn.NULL if lsn == Lsn.ZERO else lsn,
            reason=f"initial snapshot at LSN {lsn} ({total} rows, {self.removed} removed)",
            group=self.group,
        )
        control.finish_snapshot(conn, self.pipeline, source, total, self.consistent)

    def committed(self) -> None:
        self.rows_loaded += self.pending_rows
        self.pending_key, self.pending_rows = None, 0


@dataclass
class SnapshotLoader:
    """Loads ``tables`` one after the other in a thread of its own while the pipeline streams the others.

    A fault (a database down, a connection lost) is logged and the table's load starts again after a backoff,
    from its last committed chunk. ``on_done`` is called once every table is loaded (the pipeline re-plans)."""

    config: Config
    engine: sa.Engine
    tables: Sequence[TargetTable]
    instances: Mapping[TableId, CaptureInstance]  # the capture instance each table is read through (the newest)
    obs: Observability
    stop: threading.Event
    on_done: Callable[[], None] = lambda: None
    progress_stream: TextIO | None = None  # a terminal to draw a progress bar on (None: stderr if a terminal)
    _closed: threading.Event = field(default_factory=threading.Event)
    _finished: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SnapshotLoader:
        self._thread = threading.Thread(target=self._run, name="mssql2pg-snapshot", daemon=True)
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        """Every table is loaded (not merely stopped)."""
        return self._finished.is_set()

    def wait(self, stop: threading.Event) -> bool:
        """Wait until every table is loaded or ``stop`` is set; whether they are loaded."""
        while not self._finished.wait(0.2):
            if stop.is_set() or self._closed.is_set():
                return False
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the chunk in flight (rolled back: a later start resumes after the last committed one)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _stopping(self) -> bool:
        return self.stop.is_set() or self._closed.is_set()

    def _run(self) -> None:
        for table in self.tables:
            failures = 0
            while not self._stopping():
                try:
                    self.load(table)
                    break
                except LoadedElsewhere:
                    log.info("initial snapshot loaded by another process", table=str(table.source))
                    break
                except StopLoading:
                    return
                except Exception as exc:
                    failures += 1
                    delay = min(RETRY_MAX_SECONDS, 2.0 ** min(failures, 5))
                    self.obs.metrics.error(table.source, "transient")
                    log.warning(
                        "initial snapshot failed; resuming from the last committed chunk after a pause",
                        table=str(table.source),
                        error_class=type(exc).__name__,
                        error=str(exc),
                        retry_in_s=delay,
                    )
                    if self._closed.wait(delay) or self.stop.is_set():
                        return
            if self._stopping():
                return
        self._finished.set()
        self.on_done()

    def load(self, table: TargetTable) -> None:
        """Load one table to the end (or until stopped), resuming its recorded progress."""
        config = self.config
        source = str(table.source)
        instance = self.instances[table.source]
        progress = self._begin(table, instance)
        if not progress.loading:
            return
        lsn = progress.lsn
        estimated = progress.rows_estimated
        _, commit_time = snapshot_lsn(self.engine, lsn)
        store = ChunkProgress(config.pipeline.name, table, config.pipeline.group_key, self._stopping)
        store.rows_loaded = progress.rows_loaded
        applier = Applier(
            target_connector(config),
            [table],
            config.pipeline.name,
            ApplySettings(group_max_rows=1 << 62, group_max_delay=float("inf"), stale_after=None),
            checkpoints=store,
        )
        bar = _ProgressBar.on(self.progress_stream, source)
        started = time.monotonic()
        resumed_at = progress.rows_loaded
        after = progress.last_key
        log.info(
            "initial snapshot started" if after is None else "initial snapshot resumed",
            table=source,
            snapshot_lsn=str(lsn),
            rows_loaded=progress.rows_loaded,
            rows_estimated=estimated,
        )
        self._show(source, progress.rows_loaded, estimated)
        try:
            applier.start()
            self._chunks(_Load(table, instance, lsn, commit_time, estimated), applier, store, after, bar)
        finally:
            applier.close()
            bar.close()
        seconds = time.monotonic() - started
        loaded_now = store.rows_loaded - resumed_at
        self.obs.table_state(table.source, "active")
        log.info(
            "initial snapshot loaded; the table streams from its snapshot LSN",
            table=source,
            snapshot_lsn=str(lsn),
            rows=store.rows_loaded,
            removed=store.removed,
            dead_letters=applier.stats.dead_letters.get(table.source, 0),
            seconds=round(seconds, 2),
            rows_per_s=round(loaded_now / seconds) if seconds > 0 else None,
        )

    def _chunks(
        self, load: _Load, applier: Applier, store: ChunkProgress, after: tuple[Any, ...] | None, bar: _ProgressBar
    ) -> None:
        """Read, write and commit chunk after chunk (each with its progress) until a short one ends the load."""
        source = str(load.table.source)
        chunk_rows = self.config.snapshot.chunk_rows
        counted = 0
        # The next page is read while this one is written: the source read and the target write overlap (both
        # are mostly waiting on a database). Each page is still one read at some moment after the snapshot LSN.
        with ThreadPoolExecutor(1, thread_name_prefix="mssql2pg-snapshot-read") as reads:
            next_page = reads.submit(read_page, self.engine, load.instance, load.lsn, after, chunk_rows)
            while True:
                if self._stopping():
                    raise StopLoading
                page = next_page.result()
                store.pending_key, store.pending_rows = page.last_key, len(page.rows)
                store.final = page.final  # a page may end early (a key that cannot be continued after)
                if store.final:
                    store.consistent, _ = snapshot_lsn(self.engine)
                else:
                    next_page = reads.submit(read_page, self.engine, load.instance, load.lsn, page.last_key, chunk_rows)
                applier.offer(
                    TxChunk(commit_lsn=load.lsn, rows=page.rows, first=True, last=True, commit_time=load.commit_time)
                )
                applier.flush()
                applier.rewind(Lsn.NULL)
                store.committed()
                applied = applier.stats.rows.get((load.table.source, Operation.INSERT), 0)
                self.obs.metrics.rows_applied(load.table.source, "insert", applied - counted)  # throughput too
                counted = applied
                self._show(source, store.rows_loaded, load.estimated)
                bar.show(store.rows_loaded, load.estimated)
                log.debug(
                    "snapshot chunk committed",
                    table=source,
                    rows=len(page.rows),
                    rows_loaded=store.rows_loaded,
                    rows_estimated=load.estimated,
                )
                if store.final:
                    return

    def _begin(self, table: TargetTable, instance: CaptureInstance) -> control.SnapshotProgress:
        """Find the table's load, or record a new one at the source's max LSN (and pause the table for streaming,
        in the same transaction); refresh the estimated total."""
        config = self.config
        name, group, source = config.pipeline.name, config.pipeline.group_key, str(table.source)
        estimated = count_rows(self.engine, instance)
        conn = target_connector(config)()
        try:
            conn.run("BEGIN")
            control.ensure_control_schema(conn)
            progress = control.read_snapshot_progress(conn, name, source)
            if progress is None:
                lsn, _ = snapshot_lsn(self.engine, instance=instance)
                progress = control.start_snapshot(conn, name, source, group=group, lsn=lsn, estimated=estimated)
                control.register_table(
                    conn,
                    name,
                    source_table=source,
                    capture_instance=table.capture_instance.name,
                    target_table=f"{table.schema}.{table.name}",
                    group=group,
                )
                control.set_table_state(
                    conn,
                    name,
                    source,
                    "paused",
                    reason=f"{SNAPSHOT_REASON} at LSN {progress.lsn}",
                    remediation="none: the pipeline loads it and streams it once loaded (see mssql2pg status)",
                )
            elif progress.loading:
                control.set_snapshot_estimate(conn, name, source, estimated)
                progress = control.SnapshotProgress(
                    progress.table,
                    progress.group,
                    progress.lsn,
                    progress.last_key,
                    progress.rows_loaded,
                    estimated,
                    progress.state,
                )
            conn.run("COMMIT")
        finally:
            conn.close()
        return progress

    def _show(self, table: str, loaded: int, estimated: int | None) -> None:
        self.obs.snapshot_progress(table, loaded, estimated)


@dataclass(frozen=True)
class _Load:
    """What every chunk of one table's load shares."""

    table: TargetTable
    instance: CaptureInstance
    lsn: Lsn
    commit_time: datetime | None
    estimated: int | None


@dataclass
class _ProgressBar:
    """One line redrawn in place on a terminal: ``dbo.orders  [#####.....]  52%  520,000 / 1,000,000 rows``."""

    stream: TextIO | None
    table: str
    width: int = 30

    @classmethod
    def on(cls, stream: TextIO | None, table: str) -> _ProgressBar:
        chosen = stream if stream is not None else sys.stderr
        return cls(chosen if _is_terminal(chosen) else None, table)

    def show(self, loaded: int, estimated: int | None) -> None:
        if self.stream is None:
            return
        if estimated:
            share = min(1.0, loaded / estimated)
            filled = round(share * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"snapshot {self.table}  [{bar}] {share:4.0%}  {loaded:,} / {estimated:,} rows"
        else:
            text = f"snapshot {self.table}  {loaded:,} rows"
        self.stream.write("\r" + text + "\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False
