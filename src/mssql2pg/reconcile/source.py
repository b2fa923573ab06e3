"""The source side of a reconciliation: the source table through the canonical encoding, in SQLAlchemy Core.

The same constructs compile to T-SQL for SQL Server and run on the emulator (PostgreSQL), as the reader's
statements do (``tests/unit/snapshots/reconcile/*.sql`` pin the T-SQL).

The source is read as the pipeline reads it (issue 17 points 4-5): the canonical text of a character column is
computed by SQL Server from the column itself (``CAST(... AS NVARCHAR(MAX))`` converts from the column's own
code page, ``_UTF8`` collations included), while the key VALUES (what the report names, what the target is
asked for, what a repair looks up) are selected and decoded exactly as the streaming reader does
(:func:`~mssql2pg.source.statements.read_column`, :func:`~mssql2pg.source.values.column_decoder`): python-tds's
own text would be mojibake for a ``_UTF8`` column. A ``spatial: wkb`` column is compared as the source
expression the reader selects (SRID + WKB), which the target side rebuilds from its EWKB
(:func:`~mssql2pg.reconcile.canonical.pg_wkb_as_read`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import BindParameter, ColumnElement, quoted_name

from mssql2pg.model import CaptureInstance
from mssql2pg.reconcile.canonical import Dialect, FieldSpec, pg_field, spec_for, tsql_field
from mssql2pg.reconcile.statements import Relation
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source.statements import read_column, read_expression, text_in_collation
from mssql2pg.source.values import (
    column_decoder,
    key_collations,
    raw_columns,
    with_spatial_as_wkb,
    wkb_columns,
)

_BYTES = FieldSpec("bytes")


def _q(name: str) -> quoted_name:
    return quoted_name(name, quote=True)


def reading_instance(target: TargetTable, *, spatial_wkb: bool) -> CaptureInstance:
    """The capture instance the pipeline reads ``target``'s source table through (the newest), with spatial
    columns as EWKB where the table's configuration says ``spatial: wkb``: what reconcile compares and repairs."""
    ci = target.capture_instance
    return with_spatial_as_wkb(ci) if spatial_wkb else ci


def _source_table(ci: CaptureInstance) -> Any:
    """The source table under an alias: a spatial column's ``src.[g].STSrid`` needs a two-part column name."""
    names = ci.column_names
    return sa.table(_q(ci.source.name), *(sa.column(_q(n)) for n in names), schema=_q(ci.source.schema)).alias("src")


def source_relation(ci: CaptureInstance, dialect: Dialect) -> Relation:
    """The captured columns of ``ci``'s source table (the key first in key order for the report)."""
    names = ci.column_names
    src = _source_table(ci)
    wkb = wkb_columns(ci)
    raw = raw_columns(ci)
    collations = key_collations(ci)
    keys = tuple(src.c[k] for k in ci.key_columns)
    reads = tuple(read_expression(src.c[k], k, raw) for k in ci.key_columns)
    fields: dict[str, ColumnElement[str]] = {}
    for col in ci.columns:
        spec = _BYTES if col.name in wkb else spec_for(col)
        value = read_expression(src.c[col.name], col.name, (), wkb)  # text: converted by the server, see above
        fields[col.name] = tsql_field(value, spec) if dialect == "mssql" else pg_field(value, spec)
    return Relation(
        dialect=dialect,
        source=src,
        fields=tuple(fields[n] for n in names),
        key_fields=tuple(fields[k] for k in ci.key_columns),
        key_columns=keys,
        key_reads=reads if any(r is not c for r, c in zip(reads, keys, strict=True)) else (),
        key_collations=tuple(collations.get(k) for k in ci.key_columns),
    )


def key_decoder(ci: CaptureInstance) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Decodes a key as :func:`source_relation` reads it, by the reader's decoders; a value that cannot be
    decoded is kept as read (the report shows its bytes in hex: the target cannot have that row)."""
    by_name = {c.name: c for c in ci.columns}
    decoders = [column_decoder(by_name[k]) for k in ci.key_columns]

    def decode(read: tuple[Any, ...]) -> tuple[Any, ...]:
        out: list[Any] = []
        for d, value in zip(decoders, read, strict=True):
            try:
                out.append(None if value is None else d(value))
            except ValueError:
                out.append(value)
        return tuple(out)

    return decode


def rows_for_keys(ci: CaptureInstance, count: int, *, as_read: bool = False) -> sa.Select[Any]:
    """The captured columns of the source rows of ``count`` keys, bound as ``:k<i>_<j>`` (key ``j``, key column
    ``i``): what a repair writes, selected as the reader selects them (so the reader's decoders apply). T-SQL
    has no row-value IN, so an OR of ANDs; a ``varchar`` key is looked up by its text in its collation, or with
    ``as_read`` by its stored bytes (a key that could not be decoded, as :func:`key_decoder` keeps it)."""
    names = ci.column_names
    src = _source_table(ci)
    raw, wkb, collations = raw_columns(ci), wkb_columns(ci), key_collations(ci)

    def match(i: int, j: int, name: str) -> ColumnElement[bool]:
        bound: BindParameter[Any] = sa.bindparam(f"k{i}_{j}")
        collation = collations.get(name)
        if collation and as_read:
            return read_expression(src.c[name], name, raw) == bound
        column: ColumnElement[Any] = src.c[name]
        return column == (text_in_collation(bound, collation) if collation else bound)

    matches = [sa.and_(*(match(i, j, k) for i, k in enumerate(ci.key_columns))) for j in range(count)]
    return sa.select(*(read_column(src.c[n], n, raw, wkb) for n in names)).where(sa.or_(*matches))


def key_decoded(ci: CaptureInstance, key: Sequence[Any]) -> bool:
    """Whether :func:`rows_for_keys` looks ``key`` up by text (every ``varchar`` key value decoded) rather than
    ``as_read``."""
    collations = key_collations(ci)
    return all(isinstance(v, str) or v is None for k, v in zip(ci.key_columns, key, strict=True) if k in collations)
