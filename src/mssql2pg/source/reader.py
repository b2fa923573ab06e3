"""The streaming, transaction-assembling source reader.

How one window is read (compare Debezium's ``SqlServerStreamingChangeEventSource``, reference §6.2):

1. ``to = sys.fn_cdc_get_max_lsn()``. NULL means the capture job never ran (or SQL Server Agent is stopped):
   nothing is read and the window's status says so; the polling loop waits instead of spinning. If ``to`` is not
   beyond the checkpoint there is nothing new.
2. For each selected table, the window ``(checkpoint, to]`` is split among its capture instances (the older one
   until the newer one's ``start_lsn``, see :func:`~mssql2pg.source.catalog.instance_segments`), and each part
   gets a cursor that reads its change table in keyset pages of ``page_rows`` rows.
3. After each page the instance's ``fn_cdc_get_min_lsn`` is compared with the position the page started from.
   If cleanup has moved past it, changes may be gone and :class:`~mssql2pg.source.errors.LsnGapError` names the
   table. Checking after the fetch is what makes it exact: cleanup raises the floor before it deletes rows.
4. All cursors are k-way merged by ``(commit LSN, command id, seqval, operation)``, which is the order of
   transactions and, within one, of its operations.
5. Rows are cut into :class:`~mssql2pg.model.TxChunk` pieces of at most ``chunk_rows`` rows, one commit LSN per
   chunk; a one-row lookahead sets ``last`` on the final chunk of each transaction. Commit time and transaction id
   come from ``cdc.lsn_time_mapping``, itself read in pages in step with the merge.
6. The window ends with a :class:`~mssql2pg.model.Heartbeat` at ``to``.

Memory is bounded by one page per change table plus one chunk, whatever the size of a source transaction.
"""

from __future__ import annotations

import enum
import heapq
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mssql2pg.errors import SourceError
from mssql2pg.model import CaptureInstance, ChangeRow, Heartbeat, Operation, ReaderItem, TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import statements
from mssql2pg.source.catalog import Segment, instance_segments, load_capture_instances, select_instances
from mssql2pg.source.errors import CaptureInstancesChangedError, LsnGapError
from mssql2pg.source.validation import check_instance, check_width, decode_row, missing_column_fault
from mssql2pg.source.values import RowDecoder, raw_columns, with_spatial_as_wkb, wkb_columns

log = structlog.get_logger(component="reader")


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    """``chunk_rows``: the most rows in one :class:`TxChunk`. ``page_rows``: the most rows fetched from one change
    table per query (defaults to ``chunk_rows``). ``poll_interval``: seconds to wait when there is nothing new.
    ``spatial_wkb``: tables configured ``spatial: wkb`` (:func:`~mssql2pg.source.values.with_spatial_as_wkb`)."""

    chunk_rows: int = 10_000
    page_rows: int | None = None
    poll_interval: float = 1.0
    spatial_wkb: frozenset[TableId] = frozenset()  # tables whose geography/geometry columns are read as EWKB

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            msg = f"chunk_rows must be at least 1, got {self.chunk_rows}"
            raise ValueError(msg)
        if self.page_rows is not None and self.page_rows < 1:
            msg = f"page_rows must be at least 1, got {self.page_rows}"
            raise ValueError(msg)
        if self.poll_interval < 0:
            msg = f"poll_interval must not be negative, got {self.poll_interval}"
            raise ValueError(msg)

    @property
    def effective_page_rows(self) -> int:
        return self.page_rows or self.chunk_rows


class WindowStatus(enum.Enum):
    READ = "read"
    """The window ``(after, to]`` was read; its items end with a heartbeat at ``to``."""
    CAUGHT_UP = "caught_up"
    """``fn_cdc_get_max_lsn()`` is not beyond the checkpoint: nothing new."""
    NO_MAX_LSN = "no_max_lsn"
    """``fn_cdc_get_max_lsn()`` is NULL: the capture job never ran here, or SQL Server Agent is stopped."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a change-table cursor stands: the sort key of the last row it returned."""

    lsn: bytes
    command_id: int
    seqval: bytes
    operation: int


class SourceBackend(Protocol):
    """The queries the reader needs, on one open connection. :class:`SqlBackend` runs the real statements."""

    def capture_instances(self) -> list[CaptureInstance]: ...

    def max_lsn(self) -> Lsn: ...

    def min_lsn(self, capture_instance: str) -> Lsn: ...

    def change_page(
        self, instance: CaptureInstance, after: Lsn | Position, to: Lsn, limit: int
    ) -> Sequence[Sequence[Any]]:
        """Rows ``(__$start_lsn, __$seqval, __$operation, __$update_mask, __$command_id, *captured)`` after the
        exclusive bound (a window start, or a cursor position) up to ``to``, in key order, at most ``limit``."""
        ...

    def commit_times(self, after: Lsn, to: Lsn, limit: int) -> Sequence[Sequence[Any]]:
        """``(start_lsn, tran_end_time, tran_id)`` rows with ``after < start_lsn <= to``, in order."""
        ...

    def commit_time(self, lsn: Lsn) -> datetime | None: ...


class SqlBackend:
    """:class:`SourceBackend` over a SQLAlchemy connection, running :mod:`mssql2pg.source.statements`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pages: dict[tuple[str, tuple[str, ...], int, bool], Any] = {}

    def capture_instances(self) -> list[CaptureInstance]:
        return load_capture_instances(self._conn)

    def max_lsn(self) -> Lsn:
        return Lsn.from_bytes(self._conn.execute(statements.MAX_LSN).scalar())

    def min_lsn(self, capture_instance: str) -> Lsn:
        value = self._conn.execute(statements.MIN_LSN, {"capture_instance": capture_instance}).scalar()
        return Lsn.from_bytes(value)

    def change_page(
        self, instance: CaptureInstance, after: Lsn | Position, to: Lsn, limit: int
    ) -> Sequence[Sequence[Any]]:
        resume = isinstance(after, Position)
        key = (instance.name, instance.column_names, limit, resume)
        stmt = self._pages.get(key)
        if stmt is None:  # built once per window and cursor kind, not once per page
            stmt = self._pages[key] = statements.change_rows_page(
                instance.name,
                instance.column_names,
                limit,
                resume=resume,
                raw=raw_columns(instance),
                wkb=wkb_columns(instance),
            )
        params: dict[str, Any] = {"to_lsn": to.raw}
        if isinstance(after, Position):
            params |= {
                "lsn": after.lsn,
                "command_id": after.command_id,
                "seqval": after.seqval,
                "operation": after.operation,
            }
        else:
            params["after_lsn"] = (after if not after.is_null else Lsn.ZERO).raw
        try:
            return self._conn.execute(stmt, params).all()
        except Exception as exc:
            fault = missing_column_fault(instance, exc)
            if fault is not None:
                raise fault from exc
            raise

    def commit_times(self, after: Lsn, to: Lsn, limit: int) -> Sequence[Sequence[Any]]:
        params = {"after_lsn": (after if not after.is_null else Lsn.ZERO).raw, "to_lsn": to.raw}
        return self._conn.execute(statements.commit_times_page(limit), params).all()

    def commit_time(self, lsn: Lsn) -> datetime | None:
        value = self._conn.execute(statements.COMMIT_TIME, {"lsn": lsn.raw}).scalar()
        return value if isinstance(value, datetime) else None


Connect = Callable[[], AbstractContextManager[SourceBackend]]


def engine_connector(engine: Engine) -> Connect:
    """One connection per window; its read transaction is rolled back (never committed) when the window ends."""

    @contextmanager
    def connect() -> Iterator[SourceBackend]:
        # Closing the connection rolls its read transaction back (the pool resets it); an explicit rollback in a
        # ``finally`` could replace the real error when the connection is already broken.
        with engine.connect() as conn:
            yield SqlBackend(conn)

    return connect


@dataclass
class Window:
    """One read of ``(after, to]``. ``items`` is lazy; iterate it to read (status is known before that)."""

    status: WindowStatus
    after: Lsn
    to: Lsn
    items: Iterator[ReaderItem]


class Reader:
    """Reads the change tables of the selected tables and yields whole source transactions in chunks.

    ``Reader.for_tables(engine, tables)`` rediscovers the capture instances at the start of every window, so a new
    capture instance (schema change) is picked up; ``Reader(connect, instances)`` reads a fixed set.
    ``window()``/``windows()`` read one window; ``poll()`` (alias ``read()``, the pipeline's ``ChangeSource``)
    keeps reading until stopped.
    """

    def __init__(
        self,
        connect: Connect,
        instances: Sequence[CaptureInstance] = (),
        settings: ReaderSettings | None = None,
        *,
        tables: Sequence[TableId] | None = None,
        engine: Engine | None = None,
        starts: Mapping[TableId, Lsn] | None = None,
        until: Lsn | None = None,
        planned: Mapping[TableId, Sequence[CaptureInstance]] | None = None,
    ) -> None:
        self._connect = connect
        self._planned = None if planned is None else {t: instance_shapes(cis) for t, cis in planned.items()}
        self._starts = dict(starts or {})
        self._until = until
        self._settings = settings or ReaderSettings()
        self._tables = tuple(tables) if tables is not None else None
        self._instances = self._spatial(_group(instances))
        self._engine = engine
        self.last_status: WindowStatus | None = None

    @classmethod
    def for_tables(
        cls,
        engine: Engine,
        tables: Sequence[TableId],
        settings: ReaderSettings | None = None,
        *,
        starts: Mapping[TableId, Lsn] | None = None,
        until: Lsn | None = None,
        planned: Mapping[TableId, Sequence[CaptureInstance]] | None = None,
    ) -> Reader:
        """``starts``: tables whose changes begin later than the pipeline's position (a resync snapshot took
        them to that LSN; older changes are already in it). ``until``: read no further than this LSN (a table
        catching up to the pipeline's checkpoint). ``planned``: the capture instances the applier was built with;
        when a window finds others (a schema change), :class:`CaptureInstancesChangedError` is raised before that
        window is read, so the pipeline re-plans within one polling cycle."""
        return cls(
            engine_connector(engine),
            (),
            settings,
            tables=tables,
            engine=engine,
            starts=starts,
            until=until,
            planned=planned,
        )

    @property
    def settings(self) -> ReaderSettings:
        return self._settings

    @property
    def tables(self) -> tuple[TableId, ...]:
        return self._tables if self._tables is not None else tuple(self._instances)

    def window(self, start_after: Lsn) -> Window:
        """Find the window after ``start_after`` (one query) and return it with its lazily read items.

        A planned reader that is caught up also looks at the capture instances (and raises
        :class:`CaptureInstancesChangedError` on a difference): a schema change on an idle source is noticed
        within one polling cycle too, not only with the next change."""
        with self._connect() as backend:
            to = backend.max_lsn()
            if self._until is not None and not to.is_null and to > self._until:
                to = self._until
            if self._planned is not None and not to.is_null and to <= start_after:
                self._current_instances(backend)
        if to.is_null:
            return Window(WindowStatus.NO_MAX_LSN, start_after, to, iter(()))
        if to <= start_after:
            return Window(WindowStatus.CAUGHT_UP, start_after, to, iter(()))
        return Window(WindowStatus.READ, start_after, to, self._read_window(start_after, to))

    def windows(self, start_after: Lsn) -> Iterator[ReaderItem]:
        """One pass: everything after ``start_after`` up to the current max LSN; sets :attr:`last_status`."""
        window = self.window(start_after)
        self.last_status = window.status
        yield from window.items

    def poll(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool = False) -> Iterator[ReaderItem]:
        """Read window after window until ``stop`` is set (or after one pass with ``until_caught_up``).

        Waits ``poll_interval`` (interruptibly) whenever there was nothing new or no max LSN, never spins."""
        position = start_after
        warned_no_max = False
        while not stop.is_set():
            window = self.window(position)
            self.last_status = window.status
            for item in window.items:
                yield item
                if stop.is_set():
                    return
            if window.status is WindowStatus.READ:
                position = window.to
                warned_no_max = False
            elif window.status is WindowStatus.NO_MAX_LSN and not warned_no_max:
                log.warning(
                    "no maximum LSN recorded: the CDC capture job has not run",
                    hint="start SQL Server Agent (and the capture job, EXEC sys.sp_cdc_start_job) on the source",
                )
                warned_no_max = True
            if until_caught_up:
                return
            if window.status is not WindowStatus.READ:
                stop.wait(self._settings.poll_interval)

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool = False) -> Iterator[ReaderItem]:
        """The pipeline runner's ``ChangeSource.read``."""
        return self.poll(start_after, stop, until_caught_up=until_caught_up)

    def close(self) -> None:
        """Drop pooled connections (a broken one must not be reused after a fault)."""
        if self._engine is not None:
            self._engine.dispose()

    # -- one window ------------------------------------------------------------------------------------------

    def _read_window(self, after: Lsn, to: Lsn) -> Iterator[ReaderItem]:
        """One window's items. A planned reader whose read fails looks at the catalog again: an instance
        disabled (or a table dropped) between the catalog read and its change table's read makes the read fail
        (``relation ... does not exist``, SQL Server 208, or whatever the race gives); that is the re-plan
        :class:`CaptureInstancesChangedError` says, not a failure that ends the pipeline. Items already read
        are not committed past a source transaction (the runner rolls back what is open)."""
        try:
            yield from self._window_items(after, to)
        except SQLAlchemyError as exc:
            if self._planned is not None:
                with self._connect() as backend:
                    try:
                        self._current_instances(backend)
                    except CaptureInstancesChangedError as changed:
                        raise changed from exc
            raise

    def _window_items(self, after: Lsn, to: Lsn) -> Iterator[ReaderItem]:
        settings = self._settings
        with self._connect() as backend:
            instances = self._current_instances(backend)
            starts = self._starts
            cursors = [
                _cursor(backend, segment, settings.effective_page_rows)
                for table, table_instances in instances.items()
                for segment in instance_segments(table_instances, max(after, starts.get(table, after)), to)
            ]
            merged = heapq.merge(*cursors, key=_sort_key)
            times = CommitTimes(backend, after, to, settings.effective_page_rows)
            yield from assemble(merged, settings.chunk_rows, times.lookup)
            yield Heartbeat(lsn=to, source_time=backend.commit_time(to), tables=tuple(instances))

    def _current_instances(self, backend: SourceBackend) -> Mapping[TableId, tuple[CaptureInstance, ...]]:
        if self._tables is not None:
            planned = self._planned is not None
            found = select_instances(backend.capture_instances(), self._tables, missing_ok=planned)
            if self._planned is not None:  # compared as the catalog has them, before spatial columns become EWKB
                for table, was in self._planned.items():
                    table_instances = found.get(table, ())
                    if instance_shapes(table_instances) != was:  # no instance at all: CDC disabled, table dropped
                        raise CaptureInstancesChangedError(
                            table, tuple(str(s[0]) for s in was), tuple(ci.name for ci in table_instances)
                        )
            self._instances = self._spatial(found)
        for table_instances in self._instances.values():
            for ci in table_instances:
                check_instance(ci)  # a capture instance without a usable key pauses its table
        return self._instances

    def _spatial(
        self, instances: Mapping[TableId, tuple[CaptureInstance, ...]]
    ) -> dict[TableId, tuple[CaptureInstance, ...]]:
        """The instances, with spatial columns read as EWKB for the tables configured ``spatial: wkb``."""
        wkb = self._settings.spatial_wkb
        return {
            table: tuple(with_spatial_as_wkb(ci) if table in wkb or ci.source in wkb else ci for ci in cis)
            for table, cis in instances.items()
        }


def instance_shapes(instances: Sequence[CaptureInstance]) -> tuple[tuple[object, ...], ...]:
    """What the applier's plan depends on in a table's capture instances: names, captured columns (types
    included: a type change alters them) and key. Not the start LSN: a new instance's is NULL until capture
    establishes it, and the reader splits each window by the start LSNs it reads itself."""
    return tuple((ci.name, ci.columns, ci.key_columns) for ci in instances)


def _group(instances: Iterable[CaptureInstance]) -> dict[TableId, tuple[CaptureInstance, ...]]:
    grouped: dict[TableId, list[CaptureInstance]] = {}
    for ci in instances:
        grouped.setdefault(ci.source, []).append(ci)
    return {
        table: tuple(sorted(cis, key=lambda c: (c.start_lsn.is_null, c.start_lsn.raw or b"")))
        for table, cis in grouped.items()
    }


def _sort_key(row: ChangeRow) -> tuple[bytes, int, bytes, int]:
    return (row.commit_lsn.raw or b"", row.command_id or 0, row.seqval.raw or b"", int(row.operation))


def _cursor(backend: SourceBackend, segment: Segment, page_rows: int) -> Iterator[ChangeRow]:
    """Keyset-paged rows of one change table over one segment, decoded."""
    ci = segment.instance
    decode = RowDecoder(ci.columns)
    after: Lsn | Position = segment.after
    while True:
        page = backend.change_page(ci, after, segment.to, page_rows)
        _check_floor(backend, ci, after)
        commit: Lsn | None = None
        if page:
            check_width(ci, page[0])  # one query per page: every row has the same width
        for raw in page:
            # consecutive rows mostly share a commit LSN: reuse its value instead of building one per row
            if commit is None or commit.raw != raw[0]:
                commit = Lsn(bytes(raw[0]))
            yield _change_row(ci, raw, decode, commit)
        if len(page) < page_rows:
            return
        last = page[-1]
        after = Position(bytes(last[0]), int(last[4]), bytes(last[1]), int(last[2]))


def _check_floor(backend: SourceBackend, ci: CaptureInstance, after: Lsn | Position) -> None:
    """Raise :class:`LsnGapError` if cleanup may have deleted rows after ``after`` before the page was read."""
    if isinstance(after, Position):
        needed = Lsn(after.lsn)  # rows of this same commit LSN are still to come
    elif after.is_null:
        return  # no checkpoint: read whatever the instance still has
    else:
        needed = after.increment()
    floor = backend.min_lsn(ci.name)
    if floor.is_null:
        return  # just enabled; capture has not fixed the start yet, so nothing was cleaned up either
    if floor == Lsn.ZERO:
        raise SourceError(
            f"capture instance {ci.name} of {ci.source} is gone or not readable (sys.fn_cdc_get_min_lsn returned 0x00)",
            hint="check that the instance still exists (EXEC sys.sp_cdc_help_change_data_capture) and that the reader "
            "may SELECT from its change table; then restart",
        )
    if floor > needed:
        raise LsnGapError(ci.source, ci.name, Lsn(after.lsn) if isinstance(after, Position) else after, floor)


_OPERATIONS = {int(op): op for op in Operation}


def _change_row(ci: CaptureInstance, raw: Sequence[Any], decode: RowDecoder, commit: Lsn | None = None) -> ChangeRow:
    command_id = raw[4]
    if command_id is None:
        raise SourceError(
            f"change table of {ci.name} has NULL __$command_id values, which mssql2pg needs to order changes",
            hint="apply the current cumulative update to SQL Server (KB 3030352 added __$command_id), then "
            "re-create the capture instance",
        )
    mask = raw[3]
    values, fault = decode_row(ci, decode, raw[5:])
    return ChangeRow(
        table=ci.source,
        capture_instance=ci.name,
        commit_lsn=commit if commit is not None else Lsn(bytes(raw[0])),
        seqval=Lsn(bytes(raw[1])),
        operation=_OPERATIONS.get(raw[2]) or Operation(int(raw[2])),
        values=values,
        command_id=int(command_id),
        update_mask=None if mask is None else bytes(mask),
        fault=fault,
    )


@dataclass
class CommitTimes:
    """Walks ``cdc.lsn_time_mapping`` in pages, in step with transactions arriving in commit-LSN order."""

    backend: SourceBackend
    after: Lsn
    to: Lsn
    page_rows: int
    _page: list[Sequence[Any]] = field(default_factory=list)
    _index: int = 0
    _exhausted: bool = False

    def lookup(self, commit_lsn: Lsn) -> tuple[datetime | None, bytes | None]:
        """Commit time and transaction id of ``commit_lsn``; lookups must come in ascending LSN order."""
        target = commit_lsn.raw or b""
        while True:
            while self._index < len(self._page):
                row = self._page[self._index]
                lsn = bytes(row[0])
                if lsn < target:
                    self._index += 1
                    continue
                if lsn == target:
                    tran_id = row[2]
                    return row[1], None if tran_id is None else bytes(tran_id)
                return None, None
            if self._exhausted:
                return None, None
            self._fetch()

    def _fetch(self) -> None:
        after = Lsn(bytes(self._page[-1][0])) if self._page else self.after
        self._page = list(self.backend.commit_times(after, self.to, self.page_rows))
        self._index = 0
        self._exhausted = len(self._page) < self.page_rows


CommitInfo = Callable[[Lsn], tuple[datetime | None, bytes | None]]


def assemble(rows: Iterable[ChangeRow], chunk_rows: int, commit_info: CommitInfo) -> Iterator[TxChunk]:
    """Cut merged rows (commit-LSN order) into chunks of one transaction each, ``first``/``last`` set.

    A one-row lookahead tells whether a full chunk is the transaction's last: a transaction of exactly
    ``chunk_rows`` rows is one chunk with both flags, not a full chunk followed by an empty one."""
    iterator = iter(rows)
    nxt = next(iterator, None)
    while nxt is not None:
        commit_lsn = nxt.commit_lsn
        commit_time, tran_id = commit_info(commit_lsn)
        first = True
        buffer: list[ChangeRow] = []
        while nxt is not None and nxt.commit_lsn == commit_lsn:
            buffer.append(nxt)
            nxt = next(iterator, None)
            ends = nxt is None or nxt.commit_lsn != commit_lsn
            if ends or len(buffer) == chunk_rows:
                yield TxChunk(
                    commit_lsn=commit_lsn,
                    rows=tuple(buffer),
                    first=first,
                    last=ends,
                    commit_time=commit_time,
                    tran_id=tran_id,
                )
                first = False
                buffer = []
