"""The target side of a reconciliation: the target table through the canonical encoding (PostgreSQL).

The statements are SQLAlchemy Core like the source's (one builder for both, :mod:`.statements`), compiled for
PostgreSQL with named parameters and run on the pg8000 native connection the other target code uses. Metadata
columns (``_cdc_*``) are not compared; in soft-delete mode a row flagged deleted counts as absent.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, quoted_name

from mssql2pg.reconcile.canonical import FieldSpec, pg_field, pg_wkb_as_read, spec_for
from mssql2pg.reconcile.statements import Relation
from mssql2pg.sink.schema import TargetTable

_DIALECT = PGDialect(paramstyle="named")  # type: ignore[no-untyped-call]  # pg8000 native's `:name` parameters


def _q(name: str) -> quoted_name:
    return quoted_name(name, quote=True)


def target_relation(target: TargetTable, wkb: Collection[str] = ()) -> Relation:
    """``target``'s data columns, each encoded by the SQL Server type it was mapped from; the source columns
    named in ``wkb`` (read as EWKB, ``spatial: wkb``) as the SRID + WKB the source side compares
    (:func:`~mssql2pg.reconcile.canonical.pg_wkb_as_read`)."""
    names = [c.name for c in target.columns]
    meta = target.meta
    extra = [meta.deleted] if target.delete_mode == "soft" else []
    tbl = sa.table(_q(target.name), *(sa.column(_q(n)) for n in [*names, *extra]), schema=_q(target.schema))
    fields: dict[str, ColumnElement[str]] = {}
    cols = iter(target.columns)
    for codec in target.codecs:
        col = next(cols)
        offset = tbl.c[next(cols).name] if codec.target.offset_companion else None
        if codec.column.name in wkb:
            fields[codec.column.name] = pg_field(pg_wkb_as_read(tbl.c[col.name]), FieldSpec("bytes"))
        else:
            fields[codec.column.name] = pg_field(tbl.c[col.name], spec_for(codec.column), offset=offset)
    by_source = {c.source_name: c.name for c in target.columns if not c.is_offset}
    ci = target.capture_instance
    return Relation(
        dialect="postgresql",
        source=tbl,
        fields=tuple(fields[c.name] for c in ci.columns),
        key_fields=tuple(fields[k] for k in ci.key_columns),
        key_columns=tuple(tbl.c[by_source[k]] for k in ci.key_columns),
        where=sa.not_(tbl.c[meta.deleted]) if target.delete_mode == "soft" else None,
    )


def compile_for_target(stmt: ClauseElement, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """SQL text and parameters for ``conn.run`` (expanding parameters rendered for ``params``)."""
    compiled = stmt.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)  # noqa: S101 - a statement compiles with the SQL compiler
    state = compiled.construct_expanded_state(params)
    return state.statement, dict(state.parameters)


def _key_table(target: TargetTable) -> tuple[Any, list[Any]]:
    meta = target.meta
    names = [*target.key, meta.deleted, meta.lsn]
    tbl = sa.table(_q(target.name), *(sa.column(_q(n)) for n in names), schema=_q(target.schema))
    return tbl, [tbl.c[k] for k in target.key]


def _matching(keys: list[Any], count: int) -> ColumnElement[bool]:
    return sa.or_(*(sa.and_(*(c == sa.bindparam(f"k{i}_{j}") for i, c in enumerate(keys))) for j in range(count)))


def _not_newer(tbl: Any, meta: Any) -> ColumnElement[bool]:
    """A row the repair may rewrite: one whose ``_cdc_lsn`` is at or below the repair's position ``:lsn``, or one
    the pipeline cannot have written (NULL, or above ``:ceiling``, the source's max LSN read under the table
    lock). A row between the two carries a change the pipeline applied after the repair read the source: it is
    newer than what the repair holds, and nothing would replay it if it were overwritten."""
    lsn = tbl.c[meta.lsn]
    return sa.or_(
        lsn <= sa.bindparam("lsn", type_=sa.LargeBinary),
        lsn > sa.bindparam("ceiling", type_=sa.LargeBinary),
        lsn.is_(None),
    )


def delete_keys(target: TargetTable, count: int) -> ClauseElement:
    """Remove the rows of ``count`` keys (bound as ``:k<i>_<j>``) that the repair rewrites from the source
    (:func:`_not_newer`)."""
    tbl, keys = _key_table(target)
    return sa.delete(tbl).where(_matching(keys, count), _not_newer(tbl, target.meta))


def flag_deleted_keys(target: TargetTable, count: int) -> ClauseElement:
    """Soft-delete mode: flag the rows of ``count`` keys deleted at ``:lsn`` (the repair's source position), those
    the repair may rewrite (:func:`_not_newer`)."""
    tbl, keys = _key_table(target)
    meta = target.meta
    return (
        sa.update(tbl)
        .where(_matching(keys, count), _not_newer(tbl, meta))
        .values({meta.deleted: sa.true(), meta.lsn: sa.bindparam("lsn", type_=sa.LargeBinary)})
    )
