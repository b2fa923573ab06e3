"""Running the reconciliation statements on each side: the source through SQLAlchemy, the target on pg8000.

Both sides answer the same three questions (:class:`Side`), so the comparison does not know which engine it
talks to. Long ``IN`` lists are sent in batches (SQL Server takes at most 2,100 parameters per statement).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Select

from mssql2pg.pgconn import PgConnection
from mssql2pg.reconcile import statements as st
from mssql2pg.reconcile.statements import Relation
from mssql2pg.reconcile.target import compile_for_target

BATCH = 1000
"""Segments or keys per statement (below SQL Server's 2,100 parameters for keys of up to two columns)."""

Sums = dict[int, tuple[int, int]]  # segment -> (rows, checksum)
Rows = dict[str, tuple[int, tuple[Any, ...]]]  # key text -> (row hash, raw key)


class Side(Protocol):
    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums: ...
    def rows(self, bits: int, segments: Sequence[int]) -> Rows: ...
    def rows_by_key(self, keys: Sequence[Sequence[Any]]) -> Rows: ...


def _batches(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def _key_batch(n_key_columns: int) -> int:
    return max(1, min(BATCH, 2000 // max(n_key_columns, 1)))


class _Statements:
    """The three questions, asked with the relation's statements; subclasses say how a statement runs."""

    relation: Relation

    def _run(self, stmt: Select[Any], params: dict[str, Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    def _key(self, read: tuple[Any, ...]) -> tuple[Any, ...]:
        """A key as read, as the value the report names and the other side is asked for."""
        return read

    def _rows(self, result: Iterable[Sequence[Any]]) -> Rows:
        return {str(r[0]): (int(r[1]), self._key(tuple(r[2:]))) for r in result}

    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums:
        stmt = st.segment_sums(self.relation, bits, parent_bits)
        out: Sums = {}
        chunks: Iterable[Sequence[int]] = _batches(parents) if parent_bits is not None else [()]
        for chunk in chunks:
            params = {"parents": list(chunk)} if parent_bits is not None else {}
            out.update({int(r[0]): (int(r[1]), int(r[2])) for r in self._run(stmt, params)})
        return out

    def rows(self, bits: int, segments: Sequence[int]) -> Rows:
        stmt = st.segment_rows(self.relation, bits)
        out: Rows = {}
        for chunk in _batches(segments):
            out.update(self._rows(self._run(stmt, {"segments": list(chunk)})))
        return out

    def rows_by_key(self, keys: Sequence[Sequence[Any]]) -> Rows:
        out: Rows = {}
        size = _key_batch(len(self.relation.key_columns))
        text = [k for k in keys if st.decoded(self.relation, k)]
        as_read = [k for k in keys if not st.decoded(self.relation, k)]  # keys that could not be decoded
        for group, by_bytes in ((text, False), (as_read, True)):
            for i in range(0, len(group), size):
                chunk = group[i : i + size]
                stmt = st.rows_by_key(self.relation, len(chunk), as_read=by_bytes)
                out.update(self._rows(self._run(stmt, st.key_params(chunk))))
        return out


@dataclass
class SourceSide(_Statements):
    """The source (SQL Server or the emulator) through a SQLAlchemy connection."""

    conn: sa.Connection
    relation: Relation
    decode_key: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None  # keys read as the reader reads them

    def _run(self, stmt: Select[Any], params: dict[str, Any]) -> list[Sequence[Any]]:
        return [tuple(r) for r in self.conn.execute(stmt, params)]

    def _key(self, read: tuple[Any, ...]) -> tuple[Any, ...]:
        return self.decode_key(read) if self.decode_key is not None else read


@dataclass
class TargetSide(_Statements):
    """The target (PostgreSQL) through a pg8000 native connection."""

    conn: PgConnection
    relation: Relation

    def _run(self, stmt: Select[Any], params: dict[str, Any]) -> list[Sequence[Any]]:
        text, bound = compile_for_target(stmt, params)
        return [tuple(r) for r in (self.conn.run(text, **bound) or [])]
