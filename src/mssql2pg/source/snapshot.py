"""Read a whole source table as of a known LSN, for ``mssql2pg resync``.

The snapshot position is ``sys.fn_cdc_get_max_lsn()`` read *before* the first row (Debezium does the same,
see ``reference/sqlserver-cdc.md`` §6.4). Every change with a commit LSN at or below it was committed before the
read began, so the rows read include it; a change committed during the read may or may not be included, but its
LSN is above the position, so streaming from the position delivers it again and the target's LSN guard (an
upsert or delete never overwrites a row carrying a later LSN) makes that repeat harmless. So correctness does
not depend on the isolation level; on the emulator (PostgreSQL) the read still runs in one REPEATABLE READ
transaction, on SQL Server under its default READ COMMITTED (SNAPSHOT isolation would need
``ALLOW_SNAPSHOT_ISOLATION`` on the source database, a setting we do not want to require).

Rows arrive as insert :class:`~mssql2pg.model.ChangeRow` values of one "source transaction" at the snapshot
LSN, in chunks, so the applier loads them with the code that loads any large transaction: bounded memory,
COPY into staging, dead letters for values that cannot be read or that PostgreSQL refuses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from mssql2pg.errors import SourceError
from mssql2pg.model import CaptureInstance, ChangeRow, Operation, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import statements
from mssql2pg.source.validation import decode_row
from mssql2pg.source.values import RowDecoder, key_collations, raw_columns, wkb_columns


@dataclass(frozen=True)
class Snapshot:
    """A table's rows as of ``lsn``; ``chunks`` is lazy (iterate it inside the ``read_snapshot`` block)."""

    lsn: Lsn
    commit_time: datetime | None
    chunks: Iterator[TxChunk]


@contextmanager
def read_snapshot(
    engine: Engine,
    instance: CaptureInstance,
    *,
    page_rows: int,
) -> Iterator[Snapshot]:
    """Open a snapshot of ``instance``'s source table (its captured columns, by its key), one page per chunk."""
    options: dict[str, Any] = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect() as opened:
        conn = opened.execution_options(**options) if options else opened
        lsn = Lsn.from_bytes(conn.execute(statements.MAX_LSN).scalar())
        if lsn.is_null:
            raise SourceError(
                f"cannot snapshot {instance.source}: the source has no maximum LSN (the CDC capture job never ran)",
                hint="start SQL Server Agent and the capture job (EXEC sys.sp_cdc_start_job), then run resync again",
            )
        value = conn.execute(statements.COMMIT_TIME, {"lsn": lsn.raw}).scalar()
        commit_time = value if isinstance(value, datetime) else None
        lsn = _not_below_instance_start(conn, instance, lsn)
        yield Snapshot(lsn, commit_time, _chunks(conn, instance, lsn, commit_time, page_rows))


def _chunks(
    conn: Connection, ci: CaptureInstance, lsn: Lsn, commit_time: datetime | None, page_rows: int
) -> Iterator[TxChunk]:
    pages = _pages(conn, ci, lsn, page_rows)
    rows, final = next(pages)
    first = True
    while True:
        following = None if final else next(pages)
        yield TxChunk(commit_lsn=lsn, rows=rows, first=first, last=following is None, commit_time=commit_time)
        if following is None:
            return
        first, (rows, final) = False, following


def _pages(
    conn: Connection, ci: CaptureInstance, lsn: Lsn, page_rows: int
) -> Iterator[tuple[tuple[ChangeRow, ...], bool]]:
    """The table in pages of (up to) ``page_rows`` decoded rows, in key order, each with whether it is the last.

    SQL Server: one query whose rows python-tds reads off the connection as they are fetched, so memory stays
    bounded without paging (and the "server-side cursor" of the SQLAlchemy dialect is a STATIC cursor fetched
    one row per round trip). PostgreSQL (the emulator): pg8000 reads a whole result into memory, so keyset
    pages (:func:`_read_page`), all in the snapshot's one REPEATABLE READ transaction. Both select and decode
    each column as the streaming reader does (:func:`_reads`)."""
    if conn.dialect.name == "mssql":
        source = ci.source
        raw, wkb, _ = _reads(ci)
        decode = RowDecoder(ci.columns)
        stmt = statements.source_rows(source.schema, source.name, ci.column_names, ci.key_columns, raw=raw, wkb=wkb)
        result = conn.execute(stmt)
        while True:
            fetched = result.fetchmany(page_rows)
            yield tuple(_row(ci, lsn, r, decode) for r in fetched), len(fetched) < page_rows
            if len(fetched) < page_rows:
                return
    after: tuple[Any, ...] | None = None
    while True:
        page = _read_page(conn, ci, lsn, after, page_rows)
        yield page.rows, page.final
        if page.final:
            return
        after = page.last_key


def _reads(ci: CaptureInstance) -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """How the snapshot selects the instance's columns, exactly as the streaming reader does: character columns
    as their stored bytes, spatial columns of a ``spatial: wkb`` instance as SRID and WKB (``source/values.py``);
    and the ``varchar`` key columns among them, compared in their collation."""
    return raw_columns(ci), wkb_columns(ci), key_collations(ci)


def _row(ci: CaptureInstance, lsn: Lsn, raw: Sequence[Any], decode: RowDecoder) -> ChangeRow:
    """A value that cannot be decoded marks the row faulty; the applier dead-letters it (as for change rows)."""
    values, fault = decode_row(ci, decode, raw)
    return ChangeRow(
        table=ci.source,
        capture_instance=ci.name,
        commit_lsn=lsn,
        seqval=lsn,
        operation=Operation.INSERT,
        values=values,
        fault=fault,
    )


@dataclass(frozen=True)
class Page:
    """One chunk of an initial snapshot: its rows as change rows at the snapshot LSN, the key of its last row
    (where the next page starts; what the progress row records), and whether the table ends with it."""

    rows: tuple[ChangeRow, ...]
    last_key: tuple[Any, ...] | None  # None when the page is empty
    final: bool = True


def snapshot_lsn(
    engine: Engine, at: Lsn | None = None, *, instance: CaptureInstance | None = None
) -> tuple[Lsn, datetime | None]:
    """The source's max LSN (and its commit time): the position an initial snapshot is taken at. Read *before*
    the first row, so every change at or below it is in the rows read (see the module docstring). With ``at``,
    the commit time of that LSN (a resumed snapshot). A source that has captured nothing yet (no max LSN) gives
    :attr:`Lsn.ZERO`: every change it captures later is after the rows read now, and streaming replays it. With
    ``instance``, never below that instance's start (:func:`_not_below_instance_start`)."""
    with engine.connect() as conn:
        lsn = at if at is not None else Lsn.from_bytes(conn.execute(statements.MAX_LSN).scalar())
        if lsn.is_null:  # nothing captured yet: every change to come is after the rows read now
            lsn = Lsn.ZERO
        value = conn.execute(statements.COMMIT_TIME, {"lsn": lsn.raw}).scalar() if lsn != Lsn.ZERO else None
        if instance is not None and at is None:
            lsn = _not_below_instance_start(conn, instance, lsn)
    return lsn, value if isinstance(value, datetime) else None


def _not_below_instance_start(conn: Connection, instance: CaptureInstance, lsn: Lsn) -> Lsn:
    """``lsn``, or the LSN just below ``instance``'s first (``sys.fn_cdc_get_min_lsn``) when that is higher.

    SQL Server's log moves on between captured commits, so an instance enabled while the source captured nothing
    starts well above the max LSN: streaming from the max LSN would then look like a gap (changes after it that
    the instance no longer has). There is none: every change below the instance's first LSN committed before this
    read, so the rows read next hold it; the same holds when cleanup raised that first LSN. Streaming from just
    below it misses nothing and repeats nothing the LSN guard would not absorb."""
    floor = Lsn.from_bytes(conn.execute(statements.MIN_LSN, {"capture_instance": instance.name}).scalar())
    if floor.is_null or floor == Lsn.ZERO or floor <= lsn.increment():
        return lsn
    return floor.decrement()


def count_rows(engine: Engine, instance: CaptureInstance) -> int:
    """The source table's row count (64-bit), the estimated total of a snapshot's progress."""
    source = instance.source
    with engine.connect() as conn:
        stmt = statements.source_row_count(source.schema, source.name, mssql=conn.dialect.name == "mssql")
        counted = conn.execute(stmt).scalar()
    return int(counted) if isinstance(counted, int) else 0


def read_page(engine: Engine, instance: CaptureInstance, lsn: Lsn, after: Sequence[Any] | None, limit: int) -> Page:
    """Up to ``limit`` rows of the source table in key order, after the key ``after`` (from the start when None),
    each a change row at ``lsn``. One short read per page: a row changed while the load runs is read as it is
    then, and streaming from ``lsn`` replays every change after ``lsn`` in order over it, so the table
    converges (the LSN guard keeps a later change from being overwritten)."""
    with engine.connect() as conn:
        return _read_page(conn, instance, lsn, after, limit)


def _read_page(conn: Connection, ci: CaptureInstance, lsn: Lsn, after: Sequence[Any] | None, limit: int) -> Page:
    """One keyset page, selected and decoded as the streaming reader does (:func:`_reads`).

    The key the next page continues after is the last row's key as the predicate compares it: a character key
    read as bytes by its DECODED text (bound in the column's collation, ``statements.source_rows_page``), any
    other key as the driver read it. A row whose character key cannot be decoded (bytes invalid in its code
    page) is still loaded (a dead letter naming the column, as any undecodable value), but no page can
    continue after it: the page ends before it, and the next page starts with it."""
    source = ci.source
    raw, wkb, collations = _reads(ci)
    stmt = statements.source_rows_page(
        source.schema,
        source.name,
        ci.column_names,
        ci.key_columns,
        limit,
        resume=after is not None,
        raw=raw,
        wkb=wkb,
        key_collations=collations,
    )
    params = {f"key_{i}": v for i, v in enumerate(after)} if after is not None else {}
    fetched = conn.execute(stmt, params).all()
    if not fetched:
        return Page((), None)
    decode = RowDecoder(ci.columns)
    rows = tuple(_row(ci, lsn, r, decode) for r in fetched)
    final = len(fetched) < limit
    for end in range(len(rows) - 1, -1, -1):
        key = _continue_after(ci, raw, fetched[end], rows[end])
        if key is not None:
            return Page(rows if final else rows[: end + 1], key, final=final)
        if final:  # nothing reads after the last page: its progress records the key as read
            return Page(rows, _as_read(ci, fetched[end]), final=True)
    raise SourceError(
        f"cannot snapshot {source}: {len(rows)} consecutive rows have a key that cannot be decoded in its code "
        f"page ({', '.join(ci.key_columns)}), so no page can continue after them",
        hint="raise snapshot.chunk_rows above the number of such rows, or fix the key values at the source",
    )


def _as_read(ci: CaptureInstance, raw: Sequence[Any]) -> tuple[Any, ...]:
    captured = ci.column_names
    return tuple(raw[captured.index(k)] for k in ci.key_columns)


def _continue_after(
    ci: CaptureInstance, as_bytes: frozenset[str], raw: Sequence[Any], row: ChangeRow
) -> tuple[Any, ...] | None:
    """The key a page continues after this row (see :func:`_read_page`), ``None`` if a character key column
    could not be decoded. A NULL key column ends the snapshot with an error: "after NULL" matches nothing."""
    captured = ci.column_names
    key: list[Any] = []
    for name in ci.key_columns:
        p = captured.index(name)
        value = row.values[p] if name in as_bytes else raw[p]
        if raw[p] is None:
            raise SourceError(
                f"cannot snapshot {ci.source}: a row has NULL in a key column ({', '.join(ci.key_columns)})",
                hint="capture the table by its primary key (sys.sp_cdc_enable_table without @index_name)",
            )
        if name in as_bytes and not isinstance(value, str):
            return None
        key.append(value)
    return tuple(key)
