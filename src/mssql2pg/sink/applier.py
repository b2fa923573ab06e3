"""The applier: whole source transactions into PostgreSQL, atomically, exactly once.

How it works:

1. ``start()`` connects, creates the control schema and missing target tables (refusing incompatible ones),
   creates one session-local staging table per target table, and returns the committed checkpoint. There is
   one target table per source table; each of its capture instances has an encoder of its own
   (:mod:`mssql2pg.sink.encoders`), so rows of two instances of one table meet in one staging table.
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

Failures: the applier does not retry. A transient driver error propagates (the runner classifies and restarts,
calling ``abandon()`` which rolls back). A *row* fault (a value the encoder or PostgreSQL refuses, a constraint
the target has and the source does not, a write the target silently swallowed) does not stop the pipeline:

* a value the encoder refuses is dead-lettered right away, the rest of its transaction goes on;
* any other row fault rolls the group back and re-applies it table by table in halves (bisection), each half
  inside a savepoint, until the failing rows are found. They become dead letters and everything else commits,
  together with the dead letters and the checkpoint, in one PostgreSQL transaction (so exactly-once holds).
  Halves are applied in arrival order, so a key whose earlier change was dead-lettered still ends at its later
  change. Isolation needs the group's encoded rows, which are kept while the group has at most
  ``isolate_max_rows`` rows; a bigger (single huge) transaction fails as before, naming the row.

Write validation (FR-014): every COPY must report as many rows as were sent, and after a set-based apply that
wrote fewer rows than it staged, :func:`statements.count_unwritten` checks that each change reached the target.
A mismatch is a row fault (isolated, then dead-lettered), never a silent write.

The plan - which tables and capture instances are applied - can change while the applier runs, between two
source transactions (:meth:`Applier.apply_plan` and its shorthands ``add_table``, ``retire_table``,
``add_instance``, ``retire_instance``): the complete group is committed first, then new tables are prepared
(target DDL, table lock, table state, staging) and retired ones lose their staging table. A change of a capture
instance the plan does not have, of a table it applies, is a table fault
(:class:`~mssql2pg.sink.errors.UnknownCaptureInstanceError`): that table pauses, the others go on.

Everything that belongs to the group being built is one :class:`~mssql2pg.sink.group.Group`.

Writes to the target by someone else (``detect_conflicts``, the streaming pipeline's applier only: a catch-up,
a snapshot load or a repair re-delivers legitimately): the apply statement judges each key's first change of the
batch against the target row as it was (:func:`statements.conflict_kind`) and returns what it found, so policy
``source-wins`` costs no extra round trip; a table with ``on_target_conflict: dead-letter`` has its conflicting
changes set aside first (:func:`statements.set_aside_conflicts`) and dead-lettered. Either way each conflict is
counted in ``mssql2pg.target_conflicts`` in the same PostgreSQL transaction, then in ``ApplyStats.conflicts`` and
the rate-limited log (:mod:`mssql2pg.sink.conflicts`). ``protect`` installs or removes the ``target.protect``
guard at start.

``quiet_until`` (table -> LSN ``E``): a table whose initial snapshot read its pages until ``E`` (the source's max
LSN after the last page, :mod:`mssql2pg.pipeline.snapshot_load`) holds rows that already contain some changes up
to ``E``; streaming replays them legitimately, so changes of that table with a commit LSN at or below ``E`` are
applied without judging conflicts (as a catch-up applies). A group never spans such an ``E`` (it is committed
before the first transaction above it), so one group is judged, or not, as a whole; a position passed is
forgotten.

Stale events: a transaction whose source commit time is older than ``stale_after`` seconds is applied with the
target's stale flag set, logged as a warning and counted in ``ApplyStats.stale``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from mssql2pg import control
from mssql2pg.classify import classify, copy_error_position, server_fields
from mssql2pg.errors import ReplanError, SourceValueError, TargetPrivilegeError, TerminalError
from mssql2pg.model import CaptureInstance, ChangeRow, Heartbeat, Operation, ReaderItem, TableId, TxChunk
from mssql2pg.pgconn import PgConnection, PgConnector, fetch
from mssql2pg.positions import Lsn
from mssql2pg.sink import deadletters
from mssql2pg.sink import statements as sql
from mssql2pg.sink.conflicts import ERROR_CLASS, ConflictLog, TargetConflict, conflict_message, key_of, kind_of
from mssql2pg.sink.ddl import ensure_target_table
from mssql2pg.sink.encoders import InstanceEncoder
from mssql2pg.sink.errors import UnknownCaptureInstanceError
from mssql2pg.sink.group import Group, TableBuffer
from mssql2pg.sink.schema import TargetTable
from mssql2pg.sink.types import COPY_NULL, Encoder, UnstorableValueError
from mssql2pg.sink.validation import WriteMismatchError, check_copied, check_written

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
    isolate_max_rows: int = 200_000  # groups up to this size keep their encoded rows to isolate a bad row
    stale_after: float | None = 86_400.0  # seconds; older source commits are flagged stale; None: never
    stale_log_limit: int = 20  # stale changes logged one by one per group (the rest are only counted)


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
    dead_letters: dict[TableId, int] = field(default_factory=lambda: defaultdict(int))  # rows dead-lettered
    stale: dict[TableId, int] = field(default_factory=lambda: defaultdict(int))  # rows applied stale-flagged
    conflicts: dict[tuple[TableId, str], int] = field(default_factory=lambda: defaultdict(int))  # (table, kind)


@dataclass(eq=False, slots=True)
class _Route:
    """Where the rows of one capture instance go (their table's buffer) and how they are encoded: the hot loop's
    view of an :class:`InstanceEncoder`, with its per-row parts taken out once."""

    buffer: TableBuffer
    encoder: InstanceEncoder
    encoders: list[Encoder]
    nulls: list[str]
    positions: tuple[int | None, ...] | None  # None: the values are already in target order
    key_positions: tuple[int, ...]
    width: int  # values per change row

    @classmethod
    def of(cls, buffer: TableBuffer, encoder: InstanceEncoder) -> _Route:
        return cls(
            buffer,
            encoder,
            encoder.raw_encoders,
            encoder.null_texts,
            None if encoder.direct else encoder.positions,
            encoder.key_positions,
            encoder.width,
        )


@dataclass(frozen=True)
class _PlanChange:
    """What a new plan means for the target: tables to prepare, tables whose definition changed, tables gone."""

    added: list[TableBuffer]
    changed: list[tuple[TargetTable, TableBuffer]]  # (the table as it was, its buffer with the new table)
    retired: list[TableBuffer]


class Applier:
    """Applies reader items to PostgreSQL; implements the runner's ``ChangeSink`` protocol."""

    def __init__(
        self,
        connect: PgConnector,
        tables: Sequence[TargetTable],
        pipeline: str,
        settings: ApplySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        checkpoints: control.CheckpointStore | None = None,
        detect_conflicts: bool = False,
        protect: bool | None = None,
        quiet_until: Mapping[TableId, Lsn] | None = None,
    ) -> None:
        self._detect = detect_conflicts
        self._quiet = {t: lsn for t, lsn in (quiet_until or {}).items() if not lsn.is_null}
        self._protect = protect  # target.protect: install (True) or remove (False) the guard; None: leave it
        self._conflict_log = ConflictLog(clock=clock)
        self._connect = connect
        self.pipeline = pipeline
        self.settings = settings or ApplySettings()
        self._checkpoints = checkpoints or control.PipelineCheckpoint(pipeline)
        self._clock = clock
        self._wall_clock = wall_clock
        self.stats = ApplyStats()
        self._conn: PgConnection | None = None
        self._group = Group()
        self._tables: dict[TableId, TargetTable] = {}
        self._routes: dict[str, _Route] = {}
        self._next_stage = 0  # staging tables are numbered; a retired table's number is not reused
        self._install(_plan(tables))
        self._last_checkpoint_write = float("-inf")
        self._seq = 0
        self._stale_limits: tuple[datetime, datetime] | None = None  # see _is_stale
        self._stale_limits_at = float("-inf")

    @property
    def tables(self) -> tuple[TargetTable, ...]:
        """The target tables applied, in apply order."""
        return tuple(self._tables.values())

    @property
    def group(self) -> Group:
        """The group being built (read it; the applier changes it)."""
        return self._group

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> Lsn:
        """Connect, ensure control schema, target and staging tables; return the committed checkpoint."""
        self._drop_connection()
        self._group.clear()
        conn = self._connect()
        self._conn = conn
        tables = self.tables
        names = sorted({str(t.source) for t in tables})
        self._checkpoints.claim(conn, names)
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        moved = self._checkpoints.adopt(conn, names)
        for table in tables:
            ensure_target_table(conn, table)
        _guard(conn, tables, self._protect)
        _register(conn, self.pipeline, tables, self._checkpoints.group)
        checkpoint = self._checkpoints.read(conn)
        conn.run("COMMIT")
        _replan_if_moved(moved)
        if self.settings.work_mem:
            conn.run("SELECT set_config('work_mem', :v, false)", v=self.settings.work_mem)
        # JIT compiles a statement whose estimated cost is high; the planner cannot estimate joins of CTEs (the
        # conflict detection joins the batch with what the apply wrote), and compiling then costs more than the
        # statement itself. The applier's statements are short and run once: no JIT for its session.
        conn.run(sql.NO_JIT)
        for buffer in self._group.buffers.values():
            conn.run(sql.create_staging(buffer.table, buffer.index))
        self.stats.checkpoint = checkpoint
        log.info("applier started", pipeline=self.pipeline, checkpoint=str(checkpoint), tables=len(tables))
        return checkpoint

    def close(self) -> None:
        self._conflict_log.close()  # what the rate limit held back is said before the process goes
        self.abandon()

    def abandon(self) -> None:
        """Roll back anything uncommitted and drop the connection; ``start()`` begins again from the checkpoint."""
        self._group.clear()
        self._drop_connection()

    # --- the plan: which tables and capture instances are applied ---------------------------------------------

    def apply_plan(self, tables: Sequence[TargetTable]) -> None:
        """Apply exactly ``tables`` from the next source transaction on.

        Only between source transactions (``mid_transaction()`` False; RuntimeError otherwise). The complete
        group is committed first, so each change is applied under the plan it arrived in. Then a new table is
        claimed, created or checked, registered and staged; a table whose definition changed (capture instances
        added or retired, columns added) is checked again and re-staged if its columns changed; a table no longer
        in the plan loses its staging table (its session lock is held until the connection closes). Before
        ``start()`` (or after ``abandon()``) only the plan changes: the next start prepares it. A failure while
        preparing the target propagates like any other: ``abandon()``, then ``start()`` prepares the whole plan."""
        self._require_boundary()
        plan = _plan(tables)
        if self._conn is not None and self._group.pending_lsn is not None:
            self._commit()
        change = self._install(plan)
        if self._conn is not None:
            self._prepare(change)
        for buffer in change.added:
            log.info("table added", table=str(buffer.table.source), instances=_names(buffer.table))
        for old, buffer in change.changed:
            log.info(
                "table changed",
                table=str(buffer.table.source),
                instances=_names(buffer.table),
                was=_names(old),
            )
        for buffer in change.retired:
            log.info("table retired", table=str(buffer.table.source))

    def add_table(self, table: TargetTable) -> None:
        """Apply ``table`` too (see :meth:`apply_plan`)."""
        self._require_boundary()
        if table.source in self._tables:
            msg = f"{table.source} is applied already; apply_plan() replaces a table's definition"
            raise ValueError(msg)
        self.apply_plan([*self._tables.values(), table])

    def retire_table(self, source: TableId) -> None:
        """Stop applying ``source`` (see :meth:`apply_plan`)."""
        self._require_boundary()
        if source not in self._tables:
            msg = f"{source} is not applied"
            raise ValueError(msg)
        self.apply_plan([t for t in self._tables.values() if t.source != source])

    def add_instance(self, instance: CaptureInstance) -> None:
        """Apply the rows of ``instance`` to its table too, or replace the instance of that name."""
        self._require_boundary()
        table = self._tables.get(instance.source)
        if table is None:
            msg = f"{instance.source} is not applied; add_table() adds a table with its capture instances"
            raise ValueError(msg)
        self._replace(table.with_instance(instance))

    def retire_instance(self, capture_instance: str) -> None:
        """Stop applying rows of the named capture instance (its table's other instances stay)."""
        self._require_boundary()
        route = self._routes.get(capture_instance)
        if route is None:
            msg = f"capture instance {capture_instance!r} is not applied"
            raise ValueError(msg)
        self._replace(route.buffer.table.without_instance(capture_instance))

    def _replace(self, table: TargetTable) -> None:
        self.apply_plan([table if t.source == table.source else t for t in self._tables.values()])

    def _require_boundary(self) -> None:
        if self._group.open_tx is not None:
            msg = (
                f"the applier's tables change only between source transactions; transaction "
                f"{self._group.open_tx} has only partly arrived"
            )
            raise RuntimeError(msg)

    def _install(self, plan: Mapping[TableId, TargetTable]) -> _PlanChange:
        """Make ``plan`` the applier's tables in memory (buffers, routes); return what changed for the target."""
        old = self._group.buffers
        change = _PlanChange([], [], [buffer for source, buffer in old.items() if source not in plan])
        buffers: dict[TableId, TableBuffer] = {}
        for source, table in plan.items():
            buffer = old.get(source)
            if buffer is None:
                buffer = TableBuffer(table, self._next_stage)
                self._next_stage += 1
                change.added.append(buffer)
            elif buffer.table is not table:
                if not _same_definition(buffer.table, table):
                    change.changed.append((buffer.table, buffer))
                buffer.table = table
            keep = self._detect and table.options.on_target_conflict == "dead-letter"
            if keep != (buffer.by_seq is not None):
                buffer.by_seq = {} if keep else None
            buffers[source] = buffer
        self._group.buffers = buffers
        self._tables = dict(plan)
        self._routes = {
            encoder.name: _Route.of(buffers[source], encoder)
            for source, table in plan.items()
            for encoder in table.encoders
        }
        return change

    def _prepare(self, change: _PlanChange) -> None:
        """The target side of a plan change, on the open connection, outside any group."""
        conn = self._live
        for buffer in change.retired:
            conn.run(sql.drop_staging(buffer.index))
        added = sorted(str(b.table.source) for b in change.added)
        if added:
            self._checkpoints.claim(conn, added)
        touched = [*change.added, *(buffer for _old, buffer in change.changed)]
        moved: dict[str, Lsn] = {}
        if touched:
            conn.run("BEGIN")
            moved = self._checkpoints.adopt(conn, added) if added else {}
            for buffer in touched:
                ensure_target_table(conn, buffer.table)
            _guard(conn, [b.table for b in touched], self._protect, define=False)  # defined at start
            _register(conn, self.pipeline, [b.table for b in touched], self._checkpoints.group)
            conn.run("COMMIT")
        _replan_if_moved(moved)
        for old, buffer in change.changed:
            staging = sql.create_staging(buffer.table, buffer.index)
            if staging != sql.create_staging(old, buffer.index):
                conn.run(sql.drop_staging(buffer.index))
                conn.run(staging)
        for buffer in change.added:
            conn.run(sql.create_staging(buffer.table, buffer.index))

    # --- items ------------------------------------------------------------------------------------------------

    def offer(self, item: ReaderItem) -> None:
        if self._conn is None:
            msg = "Applier.offer() before start()"
            raise RuntimeError(msg)
        if isinstance(item, TxChunk):
            self._offer_chunk(item)
        else:
            self._offer_heartbeat(item)

    def mid_transaction(self) -> bool:
        return self._group.open_tx is not None

    def rewind(self, lsn: Lsn) -> None:
        """Take the committed position back to ``lsn``, so that the next item above it is applied again.

        For an initial snapshot (:mod:`mssql2pg.pipeline.snapshot_load`): its chunks all carry the snapshot LSN
        and each one commits on its own, with its progress; without this the second would read as a re-delivery
        of the first. Only between groups (nothing pending)."""
        if self._group.open_tx is not None or self._group.pending_lsn is not None:
            msg = "Applier.rewind() with changes pending"
            raise RuntimeError(msg)
        self.stats.checkpoint = lsn

    @property
    def checkpoint(self) -> Lsn:
        """The checkpoint committed so far (the runner counts a commit after a fault as recovery)."""
        return self.stats.checkpoint

    def tick(self) -> None:
        """Commit a complete group whose time bound has passed, or a due heartbeat checkpoint."""
        self._conflict_log.flush()  # a window that ended while the source is idle is summed up now, not later
        group = self._group
        if self._conn is None or group.open_tx is not None:
            return
        if group.pending_lsn is None:
            return
        due = self._group_age() >= self.settings.group_max_delay if group.has_rows else self._heartbeat_due()
        if due:
            self._commit()

    def flush(self) -> None:
        """Commit everything complete; roll back a source transaction that has only partly arrived."""
        if self._conn is None:
            return
        group = self._group
        if group.open_tx is not None:
            log.info("rolling back a partly received source transaction", commit_lsn=str(group.open_tx))
            self._rollback()
            return
        if group.pending_lsn is not None:
            self._commit()

    # --- internals --------------------------------------------------------------------------------------------

    @property
    def _live(self) -> PgConnection:
        """The open connection; only the paths after :meth:`start` (and before a fault drops it) use it."""
        conn = self._conn
        if conn is None:
            msg = "the applier has no open connection (start() not called, or a fault closed it)"
            raise RuntimeError(msg)
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except Exception as exc:
            log.debug("closing the target connection failed", error=str(exc))

    def _high_water(self) -> Lsn:
        pending = self._group.pending_lsn
        return pending if pending is not None and pending > self.stats.checkpoint else self.stats.checkpoint

    def _offer_chunk(self, chunk: TxChunk) -> None:
        lsn = chunk.commit_lsn
        group = self._group
        if group.open_tx is not None:
            if lsn != group.open_tx or chunk.first:
                msg = f"source transaction {group.open_tx} ended without its last chunk; next chunk is {lsn}"
                raise TerminalError(msg, hint="this is a reader bug; restart the pipeline (it resumes safely)")
        else:
            if lsn <= self._high_water():
                return  # already applied (or already in this group): re-delivery after a restart
            if not chunk.first:
                msg = f"chunk of source transaction {lsn} arrived without its first chunk"
                raise TerminalError(msg, hint="this is a reader bug; restart the pipeline (it resumes safely)")
            if not chunk.last and group.pending_lsn is not None:
                self._commit()  # a streamed transaction starts its own group (see the module docstring)
            elif group.last_tx is not None and self._crosses_quiet(group.last_tx, lsn):
                self._commit()  # changes up to a snapshot's end are applied without judging conflicts, after it not
            group.open_tx = lsn
        if group.started is None:
            group.started = self._clock()
        self._encode_rows(chunk)
        if not chunk.last:
            return
        group.open_tx = None
        group.pending_lsn = group.last_tx = lsn
        if chunk.commit_time is not None:
            group.commit_time = chunk.commit_time
        group.transactions += 1
        if group.rows >= self.settings.group_max_rows or self._group_age() >= self.settings.group_max_delay:
            self._commit()

    def _offer_heartbeat(self, heartbeat: Heartbeat) -> None:
        group = self._group
        if group.open_tx is not None:
            msg = f"heartbeat {heartbeat.lsn} inside source transaction {group.open_tx}"
            raise TerminalError(msg, hint="this is a reader bug; restart the pipeline (it resumes safely)")
        if heartbeat.lsn.is_null or heartbeat.lsn <= self._high_water():
            return
        group.pending_lsn = heartbeat.lsn
        if group.has_rows:
            if self._group_age() >= self.settings.group_max_delay:
                self._commit()
        elif self._heartbeat_due():
            self._commit()

    def _crosses_quiet(self, last: Lsn, lsn: Lsn) -> bool:
        """Whether a group holding transactions up to ``last`` and one at ``lsn`` would span a ``quiet_until``."""
        return any(last <= end < lsn for end in self._quiet.values())

    def _judges_conflicts(self, table: TableId) -> bool:
        """Whether this group's changes of ``table`` are judged against the target (see ``quiet_until``)."""
        if not self._detect:
            return False
        end = self._quiet.get(table)
        last = self._group.last_tx
        return end is None or last is None or last > end

    def _group_age(self) -> float:
        started = self._group.started
        return 0.0 if started is None else self._clock() - started

    def _heartbeat_due(self) -> bool:
        return self._clock() - self._last_checkpoint_write >= self.settings.heartbeat_interval

    def _encode_rows(self, chunk: TxChunk) -> None:  # noqa: PLR0912 - the hot loop stays one function
        """Encode a chunk into the per-table COPY buffers. The hot loop: plain ints, no per-row hashing of enums."""
        ctime = chunk.commit_time
        if ctime is None:
            time_field = COPY_NULL
        else:
            time_field = (ctime if ctime.tzinfo is None else ctime.replace(tzinfo=None)).isoformat(sep=" ")
        stale = self._is_stale(ctime)
        # per operation: the part of a staging line between seq and the data; built when an operation first
        # occurs in this chunk (a single-row transaction needs one of the five)
        middles: list[str | None] = [None] * 5
        lsn_raw = chunk.commit_lsn.raw
        group = self._group
        group.tran_ids[chunk.commit_lsn] = (chunk.tran_id, ctime)
        routes = self._routes
        for row in chunk.rows:
            route = routes.get(row.capture_instance)
            if route is None:
                raise self._not_applied(row)
            buffer = route.buffer
            if row.fault is not None:  # the reader could not decode it (read-side validation): never applied
                error = SourceValueError(
                    row.fault,
                    hint="fix the value at the source (a retry reads the same stored value); see docs/reliability.md",
                )
                self._dead_letter(buffer, row, error, "value read from the source cannot be decoded")
                continue
            op = staged = int(row.operation)
            if op == 3:  # update before-image: not applied, but remembered to detect a key change
                buffer.before = row
                continue
            if op == 4:
                before, buffer.before = buffer.before, None
                if before is not None and before.seqval == row.seqval and _key(before, route) != _key(row, route):
                    # the update changed the key: the old key no longer exists, the new one is inserted (staged
                    # as an insert, so that conflict detection expects the new key absent)
                    delete_middle = middles[1] or sql.staging_middle(1, lsn_raw, time_field)[stale]
                    middles[1] = delete_middle
                    self._append(route, before, delete_middle, group)
                    buffer.counts[1] += 1
                    staged = 2
            middle = middles[staged]
            if middle is None:
                middle = middles[staged] = sql.staging_middle(staged, lsn_raw, time_field)[stale]
            if not self._append(route, row, middle, group):
                continue
            buffer.counts[op] += 1
            if op != 2:
                buffer.only_inserts = False
            if stale:
                buffer.stale += 1
                self._log_stale(route, row, ctime)
        group.rows += len(chunk.rows)
        if group.retained is not None and group.rows > self.settings.isolate_max_rows:
            group.retained = None  # bounded memory wins over isolation for a huge transaction

    def _not_applied(self, row: ChangeRow) -> TerminalError:
        """The error for a row no route takes: a new capture instance of an applied table pauses that table; a
        table the applier does not apply at all means the reader and the applier disagree."""
        table = self._tables.get(row.table)
        if table is not None:
            return UnknownCaptureInstanceError(row.table, row.capture_instance, [ci.name for ci in table.instances])
        msg = f"a change of {row.table} arrived for capture instance {row.capture_instance!r}, not configured"
        return TerminalError(msg, hint="add the table to the pipeline configuration, or stop capturing it")

    def _is_stale(self, commit_time: datetime | None) -> bool:
        """Whether a source commit is older than ``stale_after``. The limit (now - stale_after, as naive
        wall-clock time for SQL Server's zone-less times and as an aware instant) is refreshed at most once per
        second of the monotonic clock: per-transaction zone conversions were a measurable part of the hot path,
        and a second is nothing against a threshold measured in hours."""
        limit = self.settings.stale_after
        if limit is None or commit_time is None:
            return False
        if self._stale_limits is None or self._clock() - self._stale_limits_at >= 1.0:
            now = self._wall_clock()
            aware = now if now.tzinfo is not None else now.astimezone()
            naive = aware.astimezone().replace(tzinfo=None) if now.tzinfo is not None else now
            self._stale_limits = (naive - timedelta(seconds=limit), aware - timedelta(seconds=limit))
            self._stale_limits_at = self._clock()
        naive_limit, aware_limit = self._stale_limits
        return commit_time < (naive_limit if commit_time.tzinfo is None else aware_limit)

    def _log_stale(self, route: _Route, row: ChangeRow, commit_time: datetime | None) -> None:
        group = self._group
        if group.stale_logged >= self.settings.stale_log_limit:
            return
        group.stale_logged += 1
        table = route.buffer.table
        log.warning(
            "stale change applied and flagged",
            table=str(table.source),
            key={k: str(row.values[i]) for k, i in zip(table.key, route.key_positions, strict=True)},
            lsn=str(row.commit_lsn),
            seqval=str(row.seqval),
            commit_time=None if commit_time is None else commit_time.isoformat(),
            stale_after_s=self.settings.stale_after,
        )

    def _dead_letter(self, buffer: TableBuffer, row: ChangeRow, error: BaseException, why: str) -> None:
        """Keep a row that is never staged (it cannot be read or stored) as a dead letter of this group."""
        group = self._group
        group.dead.append(
            deadletters.dead_letter(buffer.table, row, error, *group.tran_ids.get(row.commit_lsn, (None, None)))
        )
        log.warning(f"change dead-lettered: {why}", table=str(row.table), error=str(error))
        group.has_rows = True

    def _append(self, route: _Route, row: ChangeRow, middle: str, group: Group) -> bool:
        """Encode and buffer ``row``; False when its value cannot be stored (then it is a dead letter). ``group`` is
        ``self._group``, passed by the hot loop that already holds it."""
        values = row.values
        if len(values) != route.width:
            msg = f"{row.table}: a change row has {len(values)} values, capture instance has {route.width} columns"
            raise TerminalError(msg, hint="this is a reader bug; report it with the capture instance definition")
        positions = route.positions
        if positions is not None:  # another shape than the target's: re-ordered, NULL where it has no column
            values = tuple([None if i is None else values[i] for i in positions])
        try:
            fields = "\t".join([n if v is None else e(v) for e, n, v in zip(route.encoders, route.nulls, values)])  # noqa: B905 - lengths checked above
        except Exception:  # redone below with the checked encoders, which name the column
            try:
                fields = route.encoder.encode(row.values)
            except UnstorableValueError as exc:
                table = route.buffer.table
                self._dead_letter(route.buffer, row, exc.for_row(table.source, row), "value cannot be stored")
                return False
        self._seq += 1
        line = f"{self._seq}{middle}{fields}\n"
        buffer = route.buffer
        buffer.lines.append(line)
        by_seq = buffer.by_seq
        if by_seq is not None:
            by_seq[self._seq] = row
        retained = group.retained
        if retained is not None:
            retained.append((buffer, row, line))
        buffer.rows.append(row)
        group.has_rows = True
        if len(buffer.lines) >= self.settings.stage_rows:
            self._copy_early(buffer)
        return True

    def _begin(self) -> None:
        group = self._group
        if not group.in_pg_tx:
            conn = self._live
            conn.run("BEGIN")
            group.in_pg_tx = True
            self._checkpoints.begin(conn)

    def _copy_early(self, buffer: TableBuffer) -> None:
        """Stream a full buffer into staging before the commit; a row fault here is isolated at the commit."""
        group = self._group
        if group.failure is not None:
            buffer.lines.clear()  # the group is re-applied from the retained rows at the commit
            buffer.rows.clear()
            return
        try:
            self._copy(buffer)
        except Exception as exc:
            if group.retained is None or not _is_row_fault(exc):
                raise
            group.failure = exc
            self._live.run("ROLLBACK")
            group.in_pg_tx = False
            buffer.lines.clear()
            buffer.rows.clear()

    def _copy(self, buffer: TableBuffer) -> None:
        if not buffer.lines:
            return
        self._begin()
        self._copy_lines(buffer, buffer.lines, buffer.rows)
        buffer.staged += len(buffer.lines)
        buffer.lines.clear()
        buffer.rows.clear()

    def _copy_lines(self, buffer: TableBuffer, lines: Sequence[str], rows: Sequence[ChangeRow]) -> None:
        data = "".join(lines).encode("utf-8")
        pieces = [data[i : i + COPY_PIECE_BYTES] for i in range(0, len(data), COPY_PIECE_BYTES)]
        try:
            self._live.run(sql.copy_into_staging(buffer.table, buffer.index), stream=pieces)
        except Exception as exc:
            failed = _row_of_copy_error(exc, buffer.rows)
            if failed is not None:
                column = _column_of_copy_error(exc, buffer.table)
                error = UnstorableValueError(
                    buffer.table.source, column, f"PostgreSQL rejected the value: {_message(exc)}"
                )
                raise error.for_row(buffer.table.source, failed) from exc
            raise
        check_copied(self._live, buffer.table, len(lines))

    def _commit(self) -> None:
        group = self._group
        lsn = group.pending_lsn
        if lsn is None:
            return
        started = self._clock()
        try:
            if group.failure is not None:
                raise group.failure
            self._begin()
            for buffer in group.buffers.values():
                self._copy(buffer)
                self._apply_staged(buffer)
        except Exception as exc:
            if group.retained is None or not _is_row_fault(exc):
                raise
            self._isolate(exc)
        conn = self._live
        self._record_conflicts()
        self._record_dead_letters()
        self._checkpoints.write(conn, lsn, group.commit_time)
        conn.run("COMMIT")
        group.in_pg_tx = False
        self._last_checkpoint_write = self._clock()
        stats = self.stats
        for buffer in group.buffers.values():
            for op, count in enumerate(buffer.counts):
                if count:
                    stats.rows[(buffer.table.source, Operation(op))] += count
        for letter in group.dead:
            stats.dead_letters[letter.row.table] += 1
        for buffer in group.buffers.values():
            if buffer.stale:
                stats.stale[buffer.table.source] += buffer.stale
        self._count_conflicts(group)
        stats.transactions += group.transactions
        stats.commits += 1
        stats.checkpoint = lsn
        self._quiet = {t: end for t, end in self._quiet.items() if end > lsn}  # a snapshot's end passed: judged
        if group.commit_time is not None:
            stats.last_commit_time = group.commit_time
        stats.last_batch_rows = group.rows
        stats.last_batch_seconds = self._last_checkpoint_write - started
        group.clear()

    def _count_conflicts(self, group: Group) -> None:
        """After the commit: the conflicts reach the stats (metrics) and the rate-limited log."""
        for conflict in group.conflicts:
            self.stats.conflicts[(conflict.table, conflict.kind)] += 1
            self._conflict_log.report(conflict, pipeline=self.pipeline)
        self._conflict_log.flush()

    def _record_conflicts(self) -> None:
        """Before the commit: the conflicts' dead letters join the group's (and leave the applied counts), and the
        counts per table and kind are added to ``mssql2pg.target_conflicts``, in this transaction."""
        group = self._group
        if not group.conflicts:
            return
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for conflict in group.conflicts:
            counts[(str(conflict.table), conflict.kind)] += 1
            letter = conflict.letter
            if letter is not None:
                group.dead.append(letter)
                op = letter.row.operation
                group.buffers[conflict.table].counts[1 if op == Operation.UPDATE_BEFORE else int(op)] -= 1
        control.count_target_conflicts(self._live, self.pipeline, counts)

    def _record_dead_letters(self) -> None:
        dead = self._group.dead
        if not dead:
            return
        ids = control.record_dead_letters(self._live, self.pipeline, [letter.to_record() for letter in dead])
        for letter, dead_id in zip(dead, ids, strict=True):
            log.error(
                "change dead-lettered",
                id=dead_id,
                table=str(letter.row.table),
                lsn=str(letter.row.commit_lsn),
                seqval=str(letter.row.seqval),
                operation=int(letter.row.operation),
                error_class=letter.error_class,
                error=letter.message,
            )

    def _apply_staged(self, buffer: TableBuffer, *, validate: bool = False) -> None:
        """The set-based apply of one staged table, then the write validation.

        With conflict detection (``detect_conflicts``), policy ``source-wins`` finds the conflicts in the apply
        statement itself; policy ``dead-letter`` first sets the conflicting changes aside (one more statement, for
        those tables only), so what remains applies without conflict."""
        conn = self._live
        table = buffer.table
        detect = self._judges_conflicts(table.source)
        if detect and buffer.by_seq is not None:
            self._set_aside_conflicts(buffer)
            detect = False
        staged = buffer.staged
        if not staged:
            return
        if buffer.only_inserts and staged >= BULK_INSERT_ROWS:
            written = 0
            for statement in sql.apply_staged_inserts(table, buffer.index, detect=detect):
                if statement.startswith("ANALYZE"):
                    conn.run(statement)
                elif detect and statement.startswith("WITH"):
                    updated, found = fetch(conn, statement)[0]
                    written += int(updated)
                    self._note_conflicts(table, found)
                else:
                    conn.run(statement)
                    written += max(conn.row_count, 0)
            complete = written == staged
        else:
            statement = sql.apply_staged(table, buffer.index, unique_keys=buffer.only_inserts, detect=detect)
            counts = fetch(conn, statement)[0]
            upserted, upserts, deleted, deletes = (int(n) for n in counts[:4])
            if detect:
                self._note_conflicts(table, counts[4])
            complete = upserted == upserts and deleted == deletes
            restore = None if buffer.only_inserts else sql.restore_kept_columns(table, buffer.index)
            if restore is not None:
                conn.run(restore)
        if validate or not complete:  # fewer writes than changes: a later row already there, or lost writes
            self._validate_written(buffer)

    def _note_conflicts(self, table: TargetTable, found: Sequence[Sequence[Any]] | None) -> None:
        """Keep the conflicts an apply statement found (``[[code, [key values]], ...]`` or None) with the group."""
        for code, key in found or ():
            self._group.conflicts.append(TargetConflict(table.source, kind_of(code), key_of(table.key, key)))

    def _set_aside_conflicts(self, buffer: TableBuffer) -> None:
        """Policy ``dead-letter``: take the conflicting changes out of staging and make them dead letters of the
        group (recorded with it, in the same PostgreSQL transaction); the target rows stay as they are."""
        if not buffer.staged:
            return
        table = buffer.table
        by_seq = buffer.by_seq or {}
        group = self._group
        found = fetch(self._live, sql.set_aside_conflicts(table, buffer.index))
        for seq, code, key in sorted(found, key=lambda r: int(r[0])):
            kind = kind_of(code)
            row = by_seq[int(seq)]
            tran_id, commit_time = group.tran_ids.get(row.commit_lsn, (None, None))
            letter = deadletters.DeadLetter(
                table=table,
                row=row,
                tran_id=tran_id,
                commit_time=commit_time,
                error_class=f"{ERROR_CLASS} [{kind}]",
                message=conflict_message(kind),
                stack="",
            )
            group.conflicts.append(TargetConflict(table.source, kind, key_of(table.key, key), letter))
        buffer.staged -= len(found)

    def _validate_written(self, buffer: TableBuffer) -> None:
        check_written(self._live, buffer.table, buffer.index)

    def _isolate(self, cause: BaseException) -> None:
        """Re-apply the group from its retained rows, table by table in halves, dead-lettering what fails."""
        group = self._group
        retained = group.retained or []
        log.warning("a row of the group was refused; isolating it", error=str(cause).split("\n")[0], rows=len(retained))
        conn = self._live
        if group.in_pg_tx:
            conn.run("ROLLBACK")
            group.in_pg_tx = False
        group.failure = None
        group.conflicts.clear()  # found again by the re-apply
        self._begin()
        for buffer in group.buffers.values():
            items = [(row, line) for b, row, line in retained if b is buffer]
            if items:
                self._bisect(buffer, items)

    def _bisect(self, buffer: TableBuffer, items: Sequence[tuple[ChangeRow, str]]) -> None:
        conn = self._live
        found = len(self._group.conflicts)  # conflicts found by a half that is rolled back are forgotten with it
        conn.run("SAVEPOINT mssql2pg_isolate")
        try:
            conn.run(sql.truncate_staging(buffer.index))
            self._copy_lines(buffer, [line for _row, line in items], [row for row, _line in items])
            buffer.staged = len(items)
            buffer.only_inserts = False
            self._apply_staged(buffer, validate=True)
            conn.run(sql.truncate_staging(buffer.index))
            conn.run("RELEASE SAVEPOINT mssql2pg_isolate")
        except Exception as exc:
            if not _is_row_fault(exc):
                raise
            conn.run("ROLLBACK TO SAVEPOINT mssql2pg_isolate")
            conn.run("RELEASE SAVEPOINT mssql2pg_isolate")
            del self._group.conflicts[found:]
            if len(items) == 1:
                row, line = items[0]
                buffer.counts[1 if row.operation == Operation.UPDATE_BEFORE else int(row.operation)] -= 1
                buffer.stale -= line.split("\t", 5)[4] == "t"  # the stale column of the staging line
                group = self._group
                group.dead.append(
                    deadletters.dead_letter(buffer.table, row, exc, *group.tran_ids.get(row.commit_lsn, (None, None)))
                )
                return
            half = len(items) // 2
            self._bisect(buffer, items[:half])
            self._bisect(buffer, items[half:])
        finally:
            buffer.staged = 0

    def _rollback(self) -> None:
        if self._group.in_pg_tx:
            self._live.run("ROLLBACK")
        self._group.clear()


def _plan(tables: Sequence[TargetTable]) -> dict[TableId, TargetTable]:
    """``tables`` by source table, in order; ValueError when two describe one source table or share an instance."""
    plan: dict[TableId, TargetTable] = {}
    feeds: dict[str, TableId] = {}
    for table in tables:
        if table.source in plan:
            msg = f"two target tables for one source table: {table.source}"
            raise ValueError(msg)
        plan[table.source] = table
        for ci in table.instances:
            if ci.name in feeds:
                msg = f"capture instance {ci.name} feeds two target tables ({feeds[ci.name]}, {table.source})"
                raise ValueError(msg)
            feeds[ci.name] = table.source
    return plan


def _same_definition(a: TargetTable, b: TargetTable) -> bool:
    """Whether two descriptions of one table mean the same target fed by the same capture instances (a table
    built again from the same catalog is a new object with new encoders; the target needs nothing for it)."""
    return (a.schema, a.name, a.columns, a.key, a.delete_mode, a.meta, a.instances) == (
        b.schema,
        b.name,
        b.columns,
        b.key,
        b.delete_mode,
        b.meta,
        b.instances,
    )


def _names(table: TargetTable) -> list[str]:
    return [ci.name for ci in table.instances]


def _is_row_fault(exc: BaseException) -> bool:
    """A fault of the data of some row(s) - isolate and dead-letter - rather than of the connection or table."""
    if isinstance(exc, UnstorableValueError | WriteMismatchError):
        return True
    return getattr(classify(exc), "scope", None) == "row"


def _key(row: ChangeRow, route: _Route) -> tuple[Any, ...]:
    return tuple(row.values[i] for i in route.key_positions)


def _message(exc: BaseException) -> str:
    fields = server_fields(exc)
    if fields is not None:
        return f"{fields.get('M', '')} ({fields.get('C', '')}) {fields.get('W', '')}".strip()
    return str(exc)


def _guard(conn: PgConnection, tables: Sequence[TargetTable], protect: bool | None, *, define: bool = True) -> None:
    """``target.protect``: install the guard trigger on ``tables`` (True) or remove it (False); None: leave them
    as they are (the catch-up, snapshot and repair appliers, which do not own the setting). ``define``: (re)define
    the trigger function first - at start, inside its transaction under the control schema's lock, so concurrent
    starts do not race on it; a table added later only gets its trigger."""
    if protect is None:
        return
    present = {(str(s), str(n)) for s, n in fetch(conn, sql.PROTECTED_TABLES)}
    if protect and define:
        conn.run(sql.CREATE_PROTECT_FUNCTION)
    changed = []
    for table in tables:
        has = (table.schema, table.name) in present
        if protect == has:
            continue
        _guard_allowed(conn, table, install=protect)
        if protect:
            conn.run(sql.protect_table(table))
        else:
            conn.run(sql.unprotect_table(table.schema, table.name))
        changed.append(f"{table.schema}.{table.name}")
    if changed:
        log.info("target.protect: guard " + ("installed" if protect else "removed"), tables=changed)


def _guard_allowed(conn: PgConnection, table: TargetTable, *, install: bool) -> None:
    """Refuse, naming the privilege and ``target.protect``, to install the guard without TRIGGER on ``table`` or
    to remove it without owning ``table``: PostgreSQL's own refusal says only "permission denied for table"."""
    [[role, may_trigger, owns]] = fetch(conn, sql.GUARD_PRIVILEGES, schema=table.schema, name=table.name)
    name = f"{table.schema}.{table.name}"
    if install and not may_trigger:
        raise TargetPrivilegeError(
            f"target.protect: the role {role} lacks the TRIGGER privilege on {name}, needed to install the guard",
            hint=f"run on the target: {sql.grant_trigger(table, str(role))} or set target.protect: false",
        )
    if not install and not owns:
        raise TargetPrivilegeError(
            f"target.protect is false but {name} carries the guard trigger {sql.PROTECT_TRIGGER}, and only the "
            f"table's owner may drop it (the role {role} does not own it)",
            hint=f"have the owner run on the target: {sql.unprotect_table(table.schema, table.name)}; or set "
            "target.protect: true",
        )


def _register(conn: PgConnection, pipeline: str, tables: Sequence[TargetTable], group: str) -> None:
    """Record each applied table in the control schema's table state (a paused table stays paused)."""
    for table in tables:
        control.register_table(
            conn,
            pipeline,
            source_table=str(table.source),
            capture_instance=table.capture_instance.name,
            target_table=f"{table.schema}.{table.name}",
            group=group,
        )


def _replan_if_moved(moved: Mapping[str, Lsn]) -> None:
    """Tables that moved into this group with a position of their own (committed just now, under their write
    locks): the reader was planned without those positions, so the pipeline re-plans before applying a change."""
    if moved:
        positions = ", ".join(f"{table} at {position}" for table, position in sorted(moved.items()))
        msg = f"tables moved into this group keep their own positions ({positions}); re-planning the reader"
        raise ReplanError(msg)


def _row_of_copy_error(exc: BaseException, rows: Sequence[ChangeRow]) -> ChangeRow | None:
    """The row a COPY data error points at (PostgreSQL says ``COPY t, line N``), if it is a data error."""
    position = copy_error_position(exc)
    if position is None:
        return None
    return rows[position.line - 1] if 0 < position.line <= len(rows) else None


def _column_of_copy_error(exc: BaseException, table: TargetTable) -> str:
    """The source column a COPY error names (PostgreSQL says ``line N, column c: ...``), or ``?``."""
    position = copy_error_position(exc)
    if position is None or position.column is None:
        return "?"
    by_target = {c.name: c.source_name for c in table.columns}
    return by_target.get(position.column, position.column)
