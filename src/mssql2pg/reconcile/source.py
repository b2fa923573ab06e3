"""The source side of a reconciliation: the source table through the canonical encoding, in SQLAlchemy Core.

The same constructs compile to T-SQL for SQL Server and run on the emulator (PostgreSQL), as the reader's
statements do (``tests/unit/snapshots/reconcile/*.sql`` pin the T-SQL).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement, quoted_name

from mssql2pg.model import CaptureInstance
from mssql2pg.reconcile.canonical import Dialect, pg_field, spec_for, tsql_field
from mssql2pg.reconcile.statements import Relation


def _q(name: str) -> quoted_name:
    return quoted_name(name, quote=True)


def source_relation(ci: CaptureInstance, dialect: Dialect) -> Relation:
    """The captured columns of ``ci``'s source table (the key first in key order for the report)."""
    names = ci.column_names
    src = sa.table(_q(ci.source.name), *(sa.column(_q(n)) for n in names), schema=_q(ci.source.schema))
    fields: dict[str, ColumnElement[str]] = {}
    for col in ci.columns:
        spec = spec_for(col)
        value = src.c[col.name]
        fields[col.name] = tsql_field(value, spec) if dialect == "mssql" else pg_field(value, spec)
    return Relation(
        dialect=dialect,
        source=src,
        fields=tuple(fields[n] for n in names),
        key_fields=tuple(fields[k] for k in ci.key_columns),
        key_columns=tuple(src.c[k] for k in ci.key_columns),
    )


def rows_for_keys(ci: CaptureInstance, count: int) -> sa.Select[Any]:
    """The captured columns of the source rows of ``count`` keys, bound as ``:k<i>_<j>`` (key ``j``, key column
    ``i``): what a repair writes. T-SQL has no row-value IN, so an OR of ANDs."""
    names = ci.column_names
    src = sa.table(_q(ci.source.name), *(sa.column(_q(n)) for n in names), schema=_q(ci.source.schema))
    keys = [src.c[k] for k in ci.key_columns]
    matches = [sa.and_(*(c == sa.bindparam(f"k{i}_{j}") for i, c in enumerate(keys))) for j in range(count)]
    return sa.select(*(src.c[n] for n in names)).where(sa.or_(*matches))
