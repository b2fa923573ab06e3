"""The initial snapshot of each table in ``mssql2pg.snapshots`` (``snapshot.mode: initial``).

A table the pipeline never replicated is loaded from the source table in chunks by key, all at one snapshot LSN;
each chunk is committed together with its progress row (:func:`advance_snapshot`): the key of the last row and
the rows loaded so far. A restart (even after a kill -9) reads the row back and continues after that key with the
same snapshot LSN, so nothing is loaded twice and nothing is skipped. The row says ``loading`` until the last
chunk's transaction marks it ``done``; until then ``status``, ``/readyz`` and the metrics show the table as
snapshotting, its content legitimately incomplete.

The last key is stored as JSON with the type of each value, so that it is bound again with the type the source
driver gave it (an integer key compares as an integer, a ``datetime`` as a ``datetime``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mssql2pg.control import statements as sql
from mssql2pg.control.migrations import control_table_exists
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn

LOADING = "loading"
DONE = "done"


@dataclass(frozen=True)
class SnapshotProgress:
    """One table's initial load as the control schema has it."""

    table: str  # source table, schema.name
    group: str
    lsn: Lsn  # the snapshot LSN: the rows carry it, and the table streams after it once loaded
    last_key: tuple[Any, ...] | None  # key of the last committed row; None before the first chunk
    rows_loaded: int
    rows_estimated: int | None
    state: str  # LOADING | DONE
    consistent_lsn: Lsn = Lsn.NULL  # set when done: see mssql2pg.pipeline.snapshot_load
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def loading(self) -> bool:
        return self.state == LOADING


def _progress(row: Sequence[Any]) -> SnapshotProgress:
    raw_key = row[3]
    if isinstance(raw_key, str):
        raw_key = json.loads(raw_key)
    return SnapshotProgress(
        table=str(row[0]),
        group=str(row[1]),
        lsn=Lsn.from_bytes(row[2]),
        last_key=decode_key(raw_key) if raw_key is not None else None,
        rows_loaded=int(row[4]),
        rows_estimated=int(row[5]) if row[5] is not None else None,
        state=str(row[6]),
        consistent_lsn=Lsn.from_bytes(row[7]) if row[7] is not None else Lsn.NULL,
        started_at=row[8],
        updated_at=row[9],
        finished_at=row[10],
    )


def start_snapshot(
    conn: PgConnection, pipeline: str, table: str, *, group: str, lsn: Lsn, estimated: int | None
) -> SnapshotProgress:
    """Record the start of a table's load at ``lsn`` (kept if another process recorded one first) and return
    the row as stored."""
    conn.run(
        sql.START_SNAPSHOT,
        pipeline=pipeline,
        source_table=table,
        group_name=group,
        lsn=lsn.raw,
        lsn_text=str(lsn),
        estimated=estimated,
    )
    stored = read_snapshot_progress(conn, pipeline, table)
    if stored is None:  # pragma: no cover - inserted just above, in this transaction
        msg = f"the snapshot row of {table} vanished"
        raise RuntimeError(msg)
    return stored


def read_snapshot_progress(conn: PgConnection, pipeline: str, table: str) -> SnapshotProgress | None:
    """The load of one table; None when it never had one (or the target predates version 5)."""
    if not control_table_exists(conn, "snapshots"):
        return None
    rows = fetch(conn, sql.SELECT_SNAPSHOT, pipeline=pipeline, source_table=table)
    return _progress(rows[0]) if rows else None


def snapshots(conn: PgConnection, pipeline: str) -> dict[str, SnapshotProgress]:
    """Every load of the pipeline, loading or done: source table -> progress. Empty before version 5."""
    if not control_table_exists(conn, "snapshots"):
        return {}
    return {p.table: p for p in map(_progress, fetch(conn, sql.SELECT_SNAPSHOTS, pipeline=pipeline))}


def set_snapshot_estimate(conn: PgConnection, pipeline: str, table: str, estimated: int | None) -> None:
    """A fresh estimate of the table's rows, read again at each (re)start of its load."""
    conn.run(sql.SET_SNAPSHOT_ESTIMATE, pipeline=pipeline, source_table=table, estimated=estimated)


def advance_snapshot(conn: PgConnection, pipeline: str, table: str, last_key: Sequence[Any], rows_loaded: int) -> None:
    """In the chunk's own transaction: the key of its last row and the rows committed so far."""
    conn.run(
        sql.ADVANCE_SNAPSHOT,
        pipeline=pipeline,
        source_table=table,
        last_key=json.dumps(encode_key(last_key)),
        rows_loaded=rows_loaded,
    )


def finish_snapshot(conn: PgConnection, pipeline: str, table: str, rows_loaded: int, consistent: Lsn) -> None:
    """In the last chunk's transaction: the load is complete; the table is consistent once the group checkpoint
    passes ``consistent``."""
    conn.run(
        sql.FINISH_SNAPSHOT,
        pipeline=pipeline,
        source_table=table,
        rows_loaded=rows_loaded,
        consistent_lsn=None if consistent.is_null else consistent.raw,
    )


# --- the last key as JSON ---------------------------------------------------------------------------------------

_ENCODERS: tuple[tuple[type, str, Any], ...] = (
    (bool, "b", lambda v: v),
    (int, "i", str),  # as text: JSON numbers lose precision past 2**53
    (float, "f", repr),
    (Decimal, "d", str),
    (dt.datetime, "dt", lambda v: v.isoformat()),
    (dt.date, "da", lambda v: v.isoformat()),
    (dt.time, "t", lambda v: v.isoformat()),
    (uuid.UUID, "u", str),
    (bytes, "x", lambda v: base64.b64encode(v).decode("ascii")),
    (str, "s", lambda v: v),
)
_DECODERS: dict[str, Any] = {
    "b": bool,
    "i": int,
    "f": float,
    "d": Decimal,
    "dt": dt.datetime.fromisoformat,
    "da": dt.date.fromisoformat,
    "t": dt.time.fromisoformat,
    "u": uuid.UUID,
    "x": base64.b64decode,
    "s": str,
}


def encode_key(values: Sequence[Any]) -> list[list[Any]]:
    """Each key value as ``[type tag, text]`` (order matters: ``bool`` before ``int``, ``datetime`` before
    ``date``, as each is a subclass of the next)."""
    encoded: list[list[Any]] = []
    for given in values:
        value = bytes(given) if isinstance(given, (bytearray, memoryview)) else given
        for kind, tag, encode in _ENCODERS:
            if isinstance(value, kind):
                encoded.append([tag, encode(value)])
                break
        else:
            msg = f"a key value of type {type(value).__name__} cannot be recorded as snapshot progress"
            raise TypeError(msg)
    return encoded


def decode_key(encoded: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    return tuple(_DECODERS[str(tag)](text) for tag, text in encoded)
