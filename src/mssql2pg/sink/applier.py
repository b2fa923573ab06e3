"""The applier: whole source transactions into PostgreSQL, atomically, exactly once.

How it works:

1. ``start()`` connects, creates the control schema and missing target tables (refusing incompatible ones),
   creates one session-local staging table per target table, and returns the committed checkpoint.
2. ``offer(item)`` takes :class:`~mssql2pg.model.TxChunk` / :class:`~mssql2pg.model.Heartbeat` items in the
   order the reader sends them (see :mod:`mssql2pg.model`). Items at or below the checkpoint are ignored, which
   is what makes re-delivery after a restart harmless. Rows are encoded to COPY text per target table and
   copied into staging whenever a table's buffer reaches ``stage_rows`` - so a huge transaction is streamed
   chunk by chunk into one open PostgreSQL transaction and memory is bounded by the buffer, not by the
   transaction.
3. A *group* of consecutive complete source transactions is committed as one PostgreSQL transaction when it
   reaches ``group_max_rows`` rows or is ``group_max_delay`` seconds old: each staged table is applied with
   one set-based statement (last change per key wins; see :func:`statements.apply_staged`), and the
   checkpoint row is advanced in the same transaction. A source transaction is never split: a commit only
   happens at a transaction boundary, and a transaction that arrives in several chunks starts a group of its
   own, so that rolling back a partly received transaction never throws away complete ones.
4. A heartbeat between transactions moves the checkpoint forward (idle progress), at most once per
   ``heartbeat_interval`` seconds when it is the only thing to commit.

Failures: the applier does not retry. A driver error propagates (the runner classifies and restarts, calling
``abandon()`` which rolls back); a row PostgreSQL cannot store raises
:class:`~mssql2pg.sink.types.UnstorableValueError` carrying that row.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from mssql2pg.errors import TerminalError
from mssql2pg.model import ChangeRow, Heartbeat, Operation, ReaderItem, TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.sink import control
from mssql2pg.sink import statements as sql
from mssql2pg.sink.schema import TargetTable, ensure_target_table
from mssql2pg.sink.types import COPY_NULL, UnstorableValueError

log = structlog.get_logger(component="applier")

COPY_PIECE_BYTES = 1 << 20
BULK_INSERT_ROWS = 10_000  # insert-only batches at least this big use the update + anti-join insert path


@dataclass(frozen=True, slots=True)
class ApplySettings:
    """Grouping and buffering bounds. Defaults suit a warehouse target a few milliseconds away."""

    group_max_rows: int = 50_000
    group_max_delay: float = 0.2  # seconds since the group's first change
    heartbeat_interval: float = 1.0  # at most one checkpoint-only transaction per this many seconds
    stage_rows: int = 20_000  # rows buffered per table before they are copied into staging
    work_mem: str | None = "64MB"  # session work_mem for the set-based apply (sorting by key); None: default


@dataclass
class ApplyStats:
    """What a metrics layer reads. Counts only what was committed."""

    rows: dict[tuple[TableId, Operation], int] = field(default_factory=lambda: defaultdict(int))
    transactions: int = 0  # source transactions committed
    commits: int = 0  # PostgreSQL transactions committed (data groups and heartbeats)
    checkpoint: Lsn = Lsn.NULL
    last_commit_time: datetime | None = None  # source commit time of the last applied transaction
    last_batch_seconds: float = 0.0  # duration of the last PostgreSQL commit (apply + checkpoint)
    last_batch_rows: int = 0


@dataclass(eq=False)
class _TableBuffer:
    table: TargetTable
    index: int
    lines: list[str] = field(default_factory=list)
    rows: list[ChangeRow] = field(default_factory=list)  # parallel to lines, to name the row behind a COPY error
    staged: int = 0  # rows copied into staging in the open PostgreSQL transaction
    before: ChangeRow | None = None  # the last update before-image, to detect a key change in its after-image
    counts: list[int] = field(default_factory=lambda: [0] * 5)  # rows per operation code in this group
    only_inserts: bool = True  # staged rows are all inserts: keys are unique, no "last change per key" needed
    encoders: list[Callable[[Any], str]] = field(default_factory=list)
    nulls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.encoders = [c.raw_encoder for c in self.table.codecs]
        self.nulls = [c.null_text for c in self.table.codecs]


_COPY_LINE = re.compile(r"line (\d+)")
_COPY_COLUMN = re.compile(r"line \d+, column (.+?)(?::|$)")


class Applier:
    """Applies reader items to PostgreSQL; implements the runner's ``ChangeSink`` protocol."""

    def __init__(
        self,
        connect: Callable[[], Any],
        tables: Sequence[TargetTable],
        pipeline: str,
        settings: ApplySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [t.capture_instance.name for t in tables]
        if len(set(names)) != len(names):
            msg = "two target tables share one capture instance"
            raise ValueError(msg)
        self._connect = connect
        self._tables = tuple(tables)
        self.pipeline = pipeline
        self.settings = settings or ApplySettings()
        self._clock = clock
        self.stats = ApplyStats()
        self._conn: Any = None
        self._buffers: dict[str, _TableBuffer] = {
            t.capture_instance.name: _TableBuffer(t, i) for i, t in enumerate(self._tables)
        }
        self._reset_group()
        self._last_checkpoint_write = float("-inf")
        self._seq = 0

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> Lsn:
        """Connect, ensure control schema, target and staging tables; return the committed checkpoint."""
        self._drop_connection()
        self._reset_group()
        conn = self._connect()
        self._conn = conn
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        for table in self._tables:
            ensure_target_table(conn, table)
        control.register_tables(conn, self.pipeline, self._tables)
        checkpoint = control.read_checkpoint(conn, self.pipeline)
        conn.run("COMMIT")
        if self.settings.work_mem:
            conn.run("SELECT set_config('work_mem', :v, false)", v=self.settings.work_mem)
        for buffer in self._buffers.values():
            conn.run(sql.create_staging(buffer.table, buffer.index))
        self.stats.checkpoint = checkpoint
        log.info("applier started", pipeline=self.pipeline, checkpoint=str(checkpoint), tables=len(self._tables))
        return checkpoint

    def close(self) -> None:
        self.abandon()

    def abandon(self) -> None:
        """Roll back anything uncommitted and drop the connection; ``start()`` begins again from the checkpoint."""
        self._reset_group()
        self._drop_connection()

    # --- items ------------------------------------------------------------------------------------------------

    def offer(self, item: ReaderItem) -> None:
        if self._conn is None:
            msg = "Applier.offer() before start()"
            raise RuntimeError(msg)
        if isinstance(item, TxChunk):
            self._offer_chunk(item)
        else:
            self._offer_heartbeat(item)

    def tick(self) -> None:
        """Commit a complete group whose time bound has passed, or a due heartbeat checkpoint."""
        if self._conn is None or self._open_tx is not None:
            return
        if self._pending_lsn is None:
            return
        due = self._group_age() >= self.settings.group_max_delay if self._has_rows else self._heartbeat_due()
        if due:
            self._commit()

    def flush(self) -> None:
        """Commit everything complete; roll back a source transaction that has only partly arrived."""
        if self._conn is None:
            return
        if self._open_tx is not None:
            log.info("rolling back a partly received source transaction", commit_lsn=str(self._open_tx))
            self._rollback()
            return
        if self._pending_lsn is not None:
            self._commit()

    # --- internals --------------------------------------------------------------------------------------------

    def _reset_group(self) -> None:
        self._in_pg_tx = False
        self._open_tx: Lsn | None = None
        self._pending_lsn: Lsn | None = None  # what the next commit writes as checkpoint
        self._pending_commit_time: datetime | None = None
        self._pending_transactions = 0
        self._has_rows = False
        self._group_rows = 0
        self._group_started: float | None = None
        for buffer in getattr(self, "_buffers", {}).values():
            buffer.lines.clear()
            buffer.rows.clear()
            buffer.staged = 0
            buffer.before = None
            buffer.only_inserts = True
            buffer.counts = [0] * 5

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except Exception as exc:
            log.debug("closing the target connection failed", error=str(exc))

    def _high_water(self) -> Lsn:
        pending = self._pending_lsn
        return pending if pending is not None and pending > self.stats.checkpoint else self.stats.checkpoint

    def _offer_chunk(self, chunk: TxChunk) -> None:
        lsn = chunk.commit_lsn
        if self._open_tx is not None:
            if lsn != self._open_tx or chunk.first:
                msg = f"source transaction {self._open_tx} ended without its last chunk; next chunk is {lsn}"
                raise TerminalError(msg, hint="this is a reader bug; restart the pipeline (it resumes safely)")
        else:
            if lsn <= self._high_water():
                return  # already applied (or already in this group): re-delivery after a restart
            if not chunk.first:
                msg = f"chunk of source transaction {lsn} arrived without its first chunk"
                raise TerminalError(msg, hint="this is a reader bug; restart the pipeline (it resumes safely)")
            if not chunk.last and self._pending_lsn is not None:
                self._commit()  # a streamed transaction starts its own group (see the module docstring)
            self._open_tx = lsn
        if self._group_started is None:
            self._group_started = self._clock()
        self._encode_rows(chunk)
        if not chunk.last:
            return
        self._open_tx = None
        self._pending_lsn = lsn
        if chunk.commit_time is not None:
            self._pending_commit_time = chunk.commit_time
        self._pending_transactions += 1
        if self._group_rows >= self.settings.group_max_rows or self._group_age() >= self.settings.group_max_delay:
            self._commit()

    def _offer_heartbeat(self, heartbeat: Heartbeat) -> None:
        if self._open_tx is not None:
            msg = f"heartbeat {heartbeat.lsn} inside source transaction {self._open_tx}"
            raise TerminalError(msg, hint="this is a reader bug; restart the pipeline (it resumes safely)")
        if heartbeat.lsn.is_null or heartbeat.lsn <= self._high_water():
            return
        self._pending_lsn = heartbeat.lsn
        if self._has_rows:
            if self._group_age() >= self.settings.group_max_delay:
                self._commit()
        elif self._heartbeat_due():
            self._commit()

    def _group_age(self) -> float:
        return 0.0 if self._group_started is None else self._clock() - self._group_started

    def _heartbeat_due(self) -> bool:
        return self._clock() - self._last_checkpoint_write >= self.settings.heartbeat_interval

    def _encode_rows(self, chunk: TxChunk) -> None:
        """Encode a chunk into the per-table COPY buffers. The hot loop: plain ints, no per-row hashing of enums."""
        lsn_field = "\\\\x" + (chunk.commit_lsn.raw or b"").hex()
        ctime = chunk.commit_time
        time_field = COPY_NULL if ctime is None else ctime.replace(tzinfo=None).isoformat(sep=" ")
        # per operation: "\t<op>\t<lsn>\t<time>\t", the part of a staging line between seq and the data
        middles = [f"\t{op}\t{lsn_field}\t{time_field}\t" for op in range(5)]
        buffers = self._buffers
        for row in chunk.rows:
            buffer = buffers.get(row.capture_instance)
            if buffer is None:
                msg = f"a change of {row.table} arrived for capture instance {row.capture_instance!r}, not configured"
                raise TerminalError(msg, hint="add the table to the pipeline configuration, or stop capturing it")
            op = int(row.operation)
            if op == 3:  # update before-image: not applied, but remembered to detect a key change
                buffer.before = row
                continue
            if op == 4:
                before, buffer.before = buffer.before, None
                if before is not None and before.seqval == row.seqval and _key(before, buffer) != _key(row, buffer):
                    # the update changed the key: the old key no longer exists
                    self._append(buffer, before, middles[1])
                    buffer.counts[1] += 1
            self._append(buffer, row, middles[op])
            buffer.counts[op] += 1
            if op != 2:
                buffer.only_inserts = False
        self._group_rows += len(chunk.rows)

    def _append(self, buffer: _TableBuffer, row: ChangeRow, middle: str) -> None:
        values = row.values
        if len(values) != len(buffer.encoders):
            msg = (
                f"{row.table}: a change row has {len(values)} values, capture instance has "
                f"{len(buffer.encoders)} columns"
            )
            raise TerminalError(msg, hint="this is a reader bug; report it with the capture instance definition")
        try:
            fields = "\t".join([n if v is None else e(v) for e, n, v in zip(buffer.encoders, buffer.nulls, values)])  # noqa: B905 - lengths checked above
        except Exception:  # redone below with the checked encoders, which name the column
            try:
                fields = "\t".join([c.encode(v) for c, v in zip(buffer.table.codecs, values, strict=True)])
            except UnstorableValueError as exc:
                raise exc.for_row(buffer.table.source, row) from exc
        self._seq += 1
        buffer.lines.append(f"{self._seq}{middle}{fields}\n")
        buffer.rows.append(row)
        self._has_rows = True
        if len(buffer.lines) >= self.settings.stage_rows:
            self._copy(buffer)

    def _begin(self) -> None:
        if not self._in_pg_tx:
            self._conn.run("BEGIN")
            self._in_pg_tx = True

    def _copy(self, buffer: _TableBuffer) -> None:
        if not buffer.lines:
            return
        self._begin()
        data = "".join(buffer.lines).encode("utf-8")
        pieces = [data[i : i + COPY_PIECE_BYTES] for i in range(0, len(data), COPY_PIECE_BYTES)]
        try:
            self._conn.run(sql.copy_into_staging(buffer.table, buffer.index), stream=pieces)
        except Exception as exc:
            failed = _row_of_copy_error(exc, buffer.rows)
            if failed is not None:
                column = _column_of_copy_error(exc, buffer.table)
                error = UnstorableValueError(
                    buffer.table.source, column, f"PostgreSQL rejected the value: {_message(exc)}"
                )
                raise error.for_row(buffer.table.source, failed) from exc
            raise
        buffer.staged += len(buffer.lines)
        buffer.lines.clear()
        buffer.rows.clear()

    def _commit(self) -> None:
        lsn = self._pending_lsn
        if lsn is None:
            return
        started = self._clock()
        self._begin()
        conn = self._conn
        for buffer in self._buffers.values():
            self._copy(buffer)
            if buffer.staged and buffer.only_inserts and buffer.staged >= BULK_INSERT_ROWS:
                for statement in sql.apply_staged_inserts(buffer.table, buffer.index):
                    conn.run(statement)
            elif buffer.staged:
                conn.run(sql.apply_staged(buffer.table, buffer.index, unique_keys=buffer.only_inserts))
                restore = None if buffer.only_inserts else sql.restore_kept_columns(buffer.table, buffer.index)
                if restore is not None:
                    conn.run(restore)
        control.advance_checkpoint(conn, self.pipeline, lsn, self._pending_commit_time)
        conn.run("COMMIT")
        self._in_pg_tx = False
        self._last_checkpoint_write = self._clock()
        stats = self.stats
        for buffer in self._buffers.values():
            for op, count in enumerate(buffer.counts):
                if count:
                    stats.rows[(buffer.table.source, Operation(op))] += count
        stats.transactions += self._pending_transactions
        stats.commits += 1
        stats.checkpoint = lsn
        if self._pending_commit_time is not None:
            stats.last_commit_time = self._pending_commit_time
        stats.last_batch_rows = self._group_rows
        stats.last_batch_seconds = self._last_checkpoint_write - started
        self._reset_group()

    def _rollback(self) -> None:
        if self._in_pg_tx:
            self._conn.run("ROLLBACK")
        self._reset_group()


def _key(row: ChangeRow, buffer: _TableBuffer) -> tuple[Any, ...]:
    return tuple(row.values[i] for i in buffer.table.key_positions)


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, dict):
        return f"{arg.get('M', '')} ({arg.get('C', '')}) {arg.get('W', '')}".strip()
    return str(exc)


def _row_of_copy_error(exc: BaseException, rows: Sequence[ChangeRow]) -> ChangeRow | None:
    """The row a COPY data error points at (PostgreSQL says ``COPY t, line N``), if it is a data error."""
    arg = exc.args[0] if exc.args else None
    if not isinstance(arg, dict) or not str(arg.get("C", "")).startswith(("22", "23")):
        return None
    match = _COPY_LINE.search(str(arg.get("W", "")))
    if match is None:
        return None
    line = int(match.group(1))
    return rows[line - 1] if 0 < line <= len(rows) else None


def _column_of_copy_error(exc: BaseException, table: TargetTable) -> str:
    """The source column a COPY error names (PostgreSQL says ``line N, column c: ...``), or ``?``."""
    arg = exc.args[0] if exc.args else None
    match = _COPY_COLUMN.search(str(arg.get("W", ""))) if isinstance(arg, dict) else None
    if match is None:
        return "?"
    by_target = {c.name: c.source_name for c in table.columns}
    return by_target.get(match.group(1), match.group(1))
