"""The statements a reconciliation sends to either database, built once over a :class:`Relation`.

A relation is one side's table seen through the canonical encoding: per row the key's text and hash (which
segment the row is in), the row's hash, and the raw key values (to name the key in the report). Segments are
``key_hash / 2^(56 - bits)``: a hash of the key, never a range of keys, because SQL Server and PostgreSQL
order ``uniqueidentifier`` and collated strings differently. Every statement reads the relation in one pass
and sends back either one row per segment (count and checksum) or the rows of a few segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Select
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.expression import FromClause

from mssql2pg.reconcile.canonical import HASH_BITS, Dialect, hash56, row_text
from mssql2pg.source.statements import text_in_collation

KEY_HASH = "kh"
ROW_HASH = "rh"
KEY_TEXT = "kt"
SEGMENT = "seg"


@dataclass(frozen=True)
class Relation:
    """One side of a table: where its rows are, the canonical fields and which of them form the key."""

    dialect: Dialect
    source: FromClause
    fields: tuple[ColumnElement[str], ...]  # canonical text per compared column, in capture-instance order
    key_fields: tuple[ColumnElement[str], ...]
    key_columns: tuple[ColumnElement[object], ...]  # the key columns, in key order (what a key is looked up by)
    where: ColumnElement[bool] | None = None  # e.g. "not soft-deleted"
    key_reads: tuple[ColumnElement[object], ...] = ()  # how the key values are read, when not as the columns
    key_collations: tuple[str | None, ...] = ()  # per key column: look it up by text in this collation

    def rows(self) -> FromClause:
        """The relation as a subquery of ``kh``, ``rh``, ``kt``, ``k0``…``kn`` (the key columns) and, where the
        key is read otherwise, ``v0``…``vn`` (the key values as read)."""
        key_text = row_text(list(self.key_fields), self.dialect)
        stmt = sa.select(
            hash56(key_text, self.dialect).label(KEY_HASH),
            hash56(row_text(list(self.fields), self.dialect), self.dialect).label(ROW_HASH),
            key_text.label(KEY_TEXT),
            *(c.label(f"k{i}") for i, c in enumerate(self.key_columns)),
            *(c.label(f"v{i}") for i, c in enumerate(self.key_reads)),
        ).select_from(self.source)
        if self.where is not None:
            stmt = stmt.where(self.where)
        return stmt.subquery("r")


def _key_columns(rel: Relation, r: FromClause) -> tuple[list[ColumnElement[Any]], list[ColumnElement[Any]]]:
    """The subquery's key columns (looked up by) and key values as read (sent back)."""
    keys: list[ColumnElement[Any]] = [r.c[f"k{i}"] for i in range(len(rel.key_columns))]
    reads: list[ColumnElement[Any]] = [r.c[f"v{i}"] for i in range(len(rel.key_reads))] or keys
    return keys, reads


def _key_param(rel: Relation, i: int, name: str) -> ColumnElement[object]:
    """The bound value of key column ``i``: in the column's collation where the relation says so (a ``varchar``
    key of SQL Server, looked up by its decoded text, :func:`~mssql2pg.source.statements.text_in_collation`)."""
    param: BindParameter[Any] = sa.bindparam(name)
    collation = rel.key_collations[i] if i < len(rel.key_collations) else None
    return text_in_collation(param, collation) if collation else param


def _segment(kh: ColumnElement[int], bits: int) -> ColumnElement[int]:
    return kh // sa.literal_column(str(2 ** (HASH_BITS - bits)), sa.BigInteger)


def _checksum(rel: Relation, rh: ColumnElement[int]) -> ColumnElement[object]:
    # T-SQL's SUM(bigint) overflows after 128 rows of 56-bit hashes; PostgreSQL's sum(bigint) is numeric
    return sa.func.sum(sa.cast(rh, sa.Numeric(38, 0)) if rel.dialect == "mssql" else rh)


def segment_sums(rel: Relation, bits: int, parent_bits: int | None = None) -> Select[tuple[object, ...]]:
    """Count and checksum per segment of ``bits`` bits; with ``parent_bits``, only inside the parent segments
    bound as the expanding parameter ``:parents``."""
    r = rel.rows()
    inner = sa.select(_segment(r.c[KEY_HASH], bits).label(SEGMENT), r.c[ROW_HASH])
    if parent_bits is not None:
        inner = inner.where(_segment(r.c[KEY_HASH], parent_bits).in_(sa.bindparam("parents", expanding=True)))
    s = inner.subquery("s")
    return (
        sa.select(s.c[SEGMENT], sa.func.count().label("n"), _checksum(rel, s.c[ROW_HASH]).label("total"))
        .group_by(s.c[SEGMENT])
        .order_by(s.c[SEGMENT])
    )


def segment_rows(rel: Relation, bits: int) -> Select[tuple[object, ...]]:
    """Key text, row hash and raw key of every row in the segments bound as ``:segments`` (expanding)."""
    r = rel.rows()
    _keys, reads = _key_columns(rel, r)
    return sa.select(r.c[KEY_TEXT], r.c[ROW_HASH], *reads).where(
        _segment(r.c[KEY_HASH], bits).in_(sa.bindparam("segments", expanding=True))
    )


def rows_by_key(rel: Relation, count: int, *, as_read: bool = False) -> Select[tuple[object, ...]]:
    """Key text, row hash and key values of the rows whose key is one of ``count`` keys, bound as ``:k<i>_<j>``
    (key ``j``, column ``i``): for the re-check and repair of a few keys. T-SQL has no row-value IN.

    ``as_read``: the keys are bound as they were read, not decoded (a ``varchar`` key whose bytes are invalid
    in its code page: the pipeline dead-lettered its row, and only its stored bytes can find it again)."""
    r = rel.rows()
    keys, reads = _key_columns(rel, r)

    def match(i: int, j: int) -> ColumnElement[bool]:
        if as_read and i < len(rel.key_collations) and rel.key_collations[i]:
            return reads[i] == sa.bindparam(f"k{i}_{j}")
        return keys[i] == _key_param(rel, i, f"k{i}_{j}")

    matches = [sa.and_(*(match(i, j) for i in range(len(keys)))) for j in range(count)]
    return sa.select(r.c[KEY_TEXT], r.c[ROW_HASH], *reads).where(sa.or_(*matches))


def decoded(rel: Relation, key: Sequence[object]) -> bool:
    """Whether ``key`` is bound as text where the relation looks a key column up by text (:func:`rows_by_key`);
    otherwise it is looked up ``as_read``."""
    return all(
        isinstance(v, str) or v is None
        for i, v in enumerate(key)
        if i < len(rel.key_collations) and rel.key_collations[i]
    )


def key_params(keys: Sequence[Sequence[object]]) -> dict[str, object]:
    """The parameters of :func:`rows_by_key` for ``keys`` (raw values, in key order)."""
    return {f"k{i}_{j}": v for j, key in enumerate(keys) for i, v in enumerate(key)}
