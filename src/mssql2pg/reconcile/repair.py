"""``mssql2pg reconcile --repair``: rewrite the differing keys of a table from the source, safely while the
pipeline runs.

1. ``S`` = the source's max LSN, read *before* the rows (as a resync snapshot does, :mod:`mssql2pg.source.snapshot`):
   the rows read include every change at or below ``S``.
2. The rows of the listed keys are read from the source and written by the applier's own code as one source
   transaction at ``S``, in ONE target transaction that first takes the table's write lock (``LOCK TABLE ... IN
   SHARE ROW EXCLUSIVE MODE``, as a resync does): a running pipeline's writes to the table wait until it
   commits, so the repair cannot interleave with them. Inside it, before the rows, the listed keys' target rows
   are removed (in soft-delete mode a key the source no longer has is flagged deleted at ``S`` instead).
3. Changes the pipeline applies afterwards are ordered against ``S`` by the applier's LSN guard: one at or below
   ``S`` is already in the repaired row and is skipped; a later one applies. One the pipeline applied BEFORE the
   lock but after the read (its LSN is above ``S``, and at most the source's max LSN read under the lock) is
   newer than the row read: that target row is left as it is (a row stamped above that max LSN is not the
   pipeline's and is rewritten).

The pipeline checkpoint is not touched. The caller re-checks the keys afterwards and reports what was fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mssql2pg.model import CaptureInstance, ChangeRow, Operation, TxChunk
from mssql2pg.pgconn import PgConnection
from mssql2pg.positions import Lsn
from mssql2pg.reconcile import source as source_sql
from mssql2pg.reconcile.statements import key_params
from mssql2pg.reconcile.target import compile_for_target, delete_keys, flag_deleted_keys
from mssql2pg.sink import statements as sink_sql
from mssql2pg.sink.applier import Applier, ApplySettings
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source import statements as src_statements
from mssql2pg.source.validation import decode_row
from mssql2pg.source.values import RowDecoder

KEYS_PER_STATEMENT = 500


@dataclass
class RepairPosition:
    """The applier's checkpoint store during a repair: no claim (a running pipeline keeps its table locks; the
    table lock below serialises against it), the table lock and the removal of the listed keys after BEGIN,
    and no checkpoint written."""

    table: TargetTable
    remove: Sequence[Sequence[Any]]  # keys whose target rows are rewritten (or removed)
    flag: Sequence[Sequence[Any]]  # soft-delete mode: keys the source no longer has
    lsn: Lsn = Lsn.NULL
    ceiling: Callable[[], Lsn] = lambda: Lsn.NULL
    """The source's max LSN now: read under the table lock, bounds what the pipeline can have written."""
    removed: int = field(default=0, init=False)
    group: str = ""  # a table never recorded is recorded without a group; a recorded one keeps its group

    def read(self, conn: Any) -> Lsn:
        return Lsn.NULL

    def adopt(self, conn: Any, tables: Sequence[str]) -> dict[str, Lsn]:
        return {}  # a repair moves no position: the table's group keeps replicating it from where it was

    def claim(self, conn: Any, tables: Sequence[str]) -> None:
        return None

    def begin(self, conn: Any) -> None:
        conn.run(sink_sql.lock_for_resync(self.table))
        bounds = {"lsn": self.lsn.raw, "ceiling": self.ceiling().raw}  # rows the pipeline wrote since stay
        for keys, build, extra in ((self.remove, delete_keys, bounds), (self.flag, flag_deleted_keys, bounds)):
            for i in range(0, len(keys), KEYS_PER_STATEMENT):
                chunk = keys[i : i + KEYS_PER_STATEMENT]
                text, params = compile_for_target(build(self.table, len(chunk)), {**key_params(chunk), **extra})
                conn.run(text, **params)
                self.removed += max(conn.row_count, 0)

    def write(self, conn: Any, lsn: Lsn, commit_time: datetime | None) -> None:
        return None


def _source_rows(conn: sa.Connection, ci: CaptureInstance, keys: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    rows: list[Sequence[Any]] = []
    text = [k for k in keys if source_sql.key_decoded(ci, k)]
    as_read = [k for k in keys if not source_sql.key_decoded(ci, k)]  # by the stored bytes of an undecodable key
    for group, by_bytes in ((text, False), (as_read, True)):
        for i in range(0, len(group), KEYS_PER_STATEMENT):
            chunk = group[i : i + KEYS_PER_STATEMENT]
            stmt = source_sql.rows_for_keys(ci, len(chunk), as_read=by_bytes)
            rows.extend(conn.execute(stmt, key_params(chunk)).all())
    return rows


def _max_lsn(engine: sa.Engine) -> Lsn:
    with engine.connect() as conn:
        lsn = Lsn.from_bytes(conn.execute(src_statements.MAX_LSN).scalar())
        conn.rollback()
    return lsn


def repair_keys(
    engine: sa.Engine,
    connect: Callable[[], PgConnection],
    pipeline: str,
    table: TargetTable,
    keys: Sequence[Sequence[Any]],
    *,
    instance: CaptureInstance | None = None,
) -> int:
    """Rewrite ``keys`` (in key order, as the reader decodes them) of ``table`` from the source; the number of
    source rows written (keys the source no longer has are removed, not counted). The rows are read through
    ``instance`` (default: the table's newest capture instance), selected and decoded as the streaming reader
    does, so a repaired row holds what streaming writes (the same characters, EWKB for ``spatial: wkb``); a
    value that cannot be decoded becomes a dead letter naming its column, as in streaming."""
    ci = instance or table.capture_instance
    positions = [ci.column_names.index(k) for k in ci.key_columns]
    with engine.connect() as conn:
        lsn = Lsn.from_bytes(conn.execute(src_statements.MAX_LSN).scalar())
        raw = _source_rows(conn, ci, keys)
        conn.rollback()
    decode = RowDecoder(ci.columns)
    rows = []
    for r in raw:
        values, fault = decode_row(ci, decode, r)
        rows.append(ChangeRow(ci.source, ci.name, lsn, lsn, Operation.INSERT, values, fault=fault))
    present = {tuple(row.values[p] for p in positions) for row in rows}
    gone = [k for k in keys if tuple(k) not in present]
    soft = table.delete_mode == "soft"
    position = RepairPosition(
        table,
        remove=[*present] if soft else list(keys),
        flag=gone if soft else [],
        lsn=lsn,
        ceiling=lambda: _max_lsn(engine),
    )
    if not rows:  # nothing to write: only the removal, in the same locked transaction
        target = connect()
        try:
            target.run("BEGIN")
            position.begin(target)
            target.run("COMMIT")
        finally:
            target.close()
        return 0
    applier = Applier(connect, [table], pipeline, ApplySettings(stale_after=None), checkpoints=position)
    try:
        applier.start()
        applier.offer(TxChunk(commit_lsn=lsn, rows=tuple(rows), first=True, last=True))
        applier.flush()
    finally:
        applier.close()
    return len(rows)
