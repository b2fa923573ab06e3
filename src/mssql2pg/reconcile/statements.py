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

import sqlalchemy as sa
from sqlalchemy import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from mssql2pg.reconcile.canonical import HASH_BITS, Dialect, hash56, row_text

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
    key_columns: tuple[ColumnElement[object], ...]  # raw key values, in key order
    where: ColumnElement[bool] | None = None  # e.g. "not soft-deleted"

    def rows(self) -> FromClause:
        """The relation as a subquery of ``kh``, ``rh``, ``kt`` and ``k0``…``kn``."""
        key_text = row_text(list(self.key_fields), self.dialect)
        stmt = sa.select(
            hash56(key_text, self.dialect).label(KEY_HASH),
            hash56(row_text(list(self.fields), self.dialect), self.dialect).label(ROW_HASH),
            key_text.label(KEY_TEXT),
            *(c.label(f"k{i}") for i, c in enumerate(self.key_columns)),
        ).select_from(self.source)
        if self.where is not None:
            stmt = stmt.where(self.where)
        return stmt.subquery("r")


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
    keys = [c for c in r.c if c.name.startswith("k") and c.name[1:].isdigit()]
    return sa.select(r.c[KEY_TEXT], r.c[ROW_HASH], *keys).where(
        _segment(r.c[KEY_HASH], bits).in_(sa.bindparam("segments", expanding=True))
    )


def rows_by_key(rel: Relation, count: int) -> Select[tuple[object, ...]]:
    """Key text, row hash and raw key of the rows whose key is one of ``count`` keys, bound as ``:k<i>_<j>``
    (key ``j``, column ``i``): for the re-check and repair of a few keys. T-SQL has no row-value IN."""
    r = rel.rows()
    keys = [c for c in r.c if c.name.startswith("k") and c.name[1:].isdigit()]
    matches = [sa.and_(*(c == sa.bindparam(f"{c.name}_{j}") for c in keys)) for j in range(count)]
    return sa.select(r.c[KEY_TEXT], r.c[ROW_HASH], *keys).where(sa.or_(*matches))


def key_params(keys: Sequence[Sequence[object]]) -> dict[str, object]:
    """The parameters of :func:`rows_by_key` for ``keys`` (raw values, in key order)."""
    return {f"k{i}_{j}": v for j, key in enumerate(keys) for i, v in enumerate(key)}
