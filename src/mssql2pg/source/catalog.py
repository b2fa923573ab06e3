"""Discover the capture instances of the selected source tables.

SQL Server describes a capture instance in three catalog tables (``cdc.change_tables``,
``cdc.captured_columns``, ``cdc.index_columns``). The change table's columns are all nullable and lose some type
facts, so length, precision, scale and nullability are taken from the SOURCE table's ``sys.columns`` (as
Debezium does). Lengths are converted to characters for the N-types (``sys.columns.max_length`` counts bytes,
two per character), so that :class:`~mssql2pg.model.SourceColumn` means one thing on every backend.

A source table can have two capture instances while a schema change is in progress. Both are returned here, in
start-LSN order; :func:`instance_segments` decides which one covers which part of a window (Debezium's rule:
the older one until the newer one's ``start_lsn``), so no change is read twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from mssql2pg.classify import is_undefined_object
from mssql2pg.errors import SourceError
from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.source import statements
from mssql2pg.source.values import BINARY_TYPES, KNOWN_TYPES, TEXT_TYPES

_TWO_BYTES_PER_CHAR = frozenset({"nchar", "nvarchar", "ntext", "sysname"})
_LENGTH_TYPES = (TEXT_TYPES | BINARY_TYPES) - {"xml", "rowversion", "timestamp", "hierarchyid", "geography"}


def load_capture_instances(conn: Connection) -> list[CaptureInstance]:
    """Every capture instance of the connected database (one catalog query: the reader asks it at every idle
    poll, so it is one round trip, not one per catalog table)."""
    try:
        rows = [dict(r._mapping) for r in conn.execute(statements.CAPTURE_INSTANCE_CATALOG)]
    except DBAPIError as exc:
        if is_undefined_object(exc):
            raise SourceError(
                "change data capture is not enabled on the source database (cdc.change_tables does not exist)",
                hint="run EXEC sys.sp_cdc_enable_db; in the source database (needs sysadmin), then enable the "
                "tables with sys.sp_cdc_enable_table",
            ) from exc
        raise
    instance_rows: dict[int, dict[str, Any]] = {}
    for row in rows:
        instance_rows.setdefault(int(row["object_id"]), row)
    column_rows = [row for row in rows if row["column_name"] is not None]
    key_rows = sorted(
        (row for row in column_rows if row["index_ordinal"] is not None),
        key=lambda row: (int(row["object_id"]), int(row["index_ordinal"])),
    )
    return build_capture_instances(instance_rows.values(), column_rows, key_rows)


def build_capture_instances(
    instance_rows: Iterable[Mapping[str, Any]],
    column_rows: Iterable[Mapping[str, Any]],
    key_rows: Iterable[Mapping[str, Any]],
) -> list[CaptureInstance]:
    """Assemble :class:`CaptureInstance` values from the rows of the three catalog statements."""
    columns: dict[int, list[SourceColumn]] = {}
    for row in column_rows:
        columns.setdefault(int(row["object_id"]), []).append(source_column(row))
    keys: dict[int, list[str]] = {}
    for row in key_rows:
        keys.setdefault(int(row["object_id"]), []).append(str(row["column_name"]))
    result = []
    for row in instance_rows:
        object_id = int(row["object_id"])
        result.append(
            CaptureInstance(
                name=str(row["capture_instance"]),
                source=TableId(str(row["source_schema"]), str(row["source_table"])),
                start_lsn=Lsn.from_bytes(row["start_lsn"]),
                columns=tuple(sorted(columns.get(object_id, []), key=lambda c: c.ordinal)),
                key_columns=tuple(keys.get(object_id, [])),
                object_id=object_id,
                supports_net_changes=bool(row["supports_net_changes"]),
                create_date=row["create_date"],
            )
        )
    return result


def source_column(row: Mapping[str, Any]) -> SourceColumn:
    """One ``CAPTURED_COLUMNS`` row → :class:`SourceColumn` (lengths in characters for character types)."""
    sql_type = _type_name(row["column_type"], row["type_name"])
    max_length = row["max_length"]
    if sql_type not in _LENGTH_TYPES or max_length is None:
        max_length = None
    elif sql_type in _TWO_BYTES_PER_CHAR and max_length != -1:
        max_length = int(max_length) // 2
    nullable = row["is_nullable"]
    return SourceColumn(
        name=str(row["column_name"]),
        ordinal=int(row["column_ordinal"]),
        sql_type=sql_type,
        max_length=None if max_length is None else int(max_length),
        precision=None if row["precision"] is None else int(row["precision"]),
        scale=None if row["scale"] is None else int(row["scale"]),
        nullable=True if nullable is None else bool(nullable),
        column_id=None if row["column_id"] is None else int(row["column_id"]),
        # the outer join to the source table's sys.columns finds nothing: ALTER TABLE ... DROP COLUMN (§4)
        dropped=nullable is None,
        default=None if row.get("column_default") is None else str(row["column_default"]),
        collation=str(row["collation_name"]) if row.get("collation_name") else None,
    )


def _type_name(column_type: str | None, type_name: str | None) -> str:
    """Prefer ``captured_columns.column_type`` (it follows type changes); an alias type falls back to the
    source column's ``sys.types`` name when only that one is a type we know."""
    candidates = [t.strip().lower() for t in (column_type, type_name) if t]
    for name in candidates:
        if name in KNOWN_TYPES:
            return name
    return candidates[0] if candidates else "unknown"


def select_instances(
    instances: Sequence[CaptureInstance], tables: Sequence[TableId], *, missing_ok: bool = False
) -> dict[TableId, tuple[CaptureInstance, ...]]:
    """The capture instances of each selected table, oldest first (one, or two during a schema change).

    Table names match exactly, or else case-insensitively (SQL Server's default collation), if unambiguous.
    A table without a capture instance is a :class:`SourceError` whose hint is the exact command to run, or,
    with ``missing_ok`` (a running reader: the caller tells a table that is gone), simply not in the result.
    """
    by_table: dict[TableId, list[CaptureInstance]] = {}
    for ci in instances:
        by_table.setdefault(ci.source, []).append(ci)
    folded: dict[tuple[str, str], list[TableId]] = {}
    for table in by_table:
        folded.setdefault((table.schema.casefold(), table.name.casefold()), []).append(table)
    result: dict[TableId, tuple[CaptureInstance, ...]] = {}
    missing: list[TableId] = []
    for wanted in tables:
        found = wanted if wanted in by_table else None
        if found is None:
            matches = folded.get((wanted.schema.casefold(), wanted.name.casefold()), [])
            found = matches[0] if len(matches) == 1 else None
        if found is None:
            missing.append(wanted)
            continue
        result[wanted] = tuple(sorted(by_table[found], key=_instance_age))
    if missing and not missing_ok:
        names = ", ".join(str(t) for t in missing)
        hint = " ".join(enable_table_command(t) for t in missing)
        raise SourceError(
            f"no capture instance for {names}: change data capture is not enabled on "
            + ("this table" if len(missing) == 1 else "these tables"),
            hint=f"run {hint} in the source database (needs db_owner), and check that SQL Server Agent runs",
        )
    return result


def _instance_age(ci: CaptureInstance) -> tuple[bool, bytes, Any, str]:
    # Instances whose start LSN is not yet established (NULL) are the newest.
    return (ci.start_lsn.is_null, ci.start_lsn.raw or b"", ci.create_date or 0, ci.name)


def enable_table_command(table: TableId) -> str:
    """The T-SQL that enables CDC on a table, names as N'' literals with quotes doubled."""
    schema = table.schema.replace("'", "''")
    name = table.name.replace("'", "''")
    return f"EXEC sys.sp_cdc_enable_table @source_schema = N'{schema}', @source_name = N'{name}', @role_name = NULL;"


@dataclass(frozen=True, slots=True)
class Segment:
    """The part ``(after, to]`` of a window that one capture instance covers."""

    instance: CaptureInstance
    after: Lsn
    to: Lsn


def instance_segments(instances: Sequence[CaptureInstance], after: Lsn, to: Lsn) -> list[Segment]:
    """Split the window ``(after, to]`` of one table among its capture instances (oldest first).

    Debezium's rule: an older instance covers commit LSNs below the next instance's ``start_lsn``; the newer one
    covers from its ``start_lsn`` on. Both change tables receive every change after the newer one exists, so
    reading both over the same range would double each change. An instance whose ``start_lsn`` is NULL (capture
    has not established it yet) or beyond ``to`` covers nothing in this window.
    """
    usable = [ci for ci in instances if not ci.start_lsn.is_null and ci.start_lsn <= to]
    if not usable:
        usable = list(instances[:1])  # nothing established yet: reading the oldest cannot double anything
    segments = []
    for i, ci in enumerate(usable):
        low = after
        if i > 0:
            low = max(after, ci.start_lsn.decrement())
        high = to
        if i + 1 < len(usable):
            high = min(to, usable[i + 1].start_lsn.decrement())
        if low < high:
            segments.append(Segment(ci, low, high))
    return segments
