"""The record of source schema changes in ``mssql2pg.schema_changes`` (issue 12): one row per change the
pipeline detected, with what it did (the DDL it ran) or what it recommends (the DDL an operator reviews), and a
status: ``auto-applied``, ``pending-review``, ``failed`` or ``approved``.

Kept in the target next to the data, so that the history of a table's shape is where its rows are, and so that
``mssql2pg schema list`` and ``mssql2pg schema approve`` work without a running pipeline. A change is recorded
once: the pipeline may notice the same pending change again after a restart, and :func:`record_schema_change`
returns the existing row then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mssql2pg.control import statements as sql
from mssql2pg.control.migrations import control_table_exists
from mssql2pg.pgconn import PgConnection, fetch

SCHEMA_CHANGE_STATUSES = ("auto-applied", "pending-review", "failed", "approved")
SCHEMA_CHANGE_KINDS = (
    "instance-switch",
    "add-column",
    "drop-column",
    "type-change",
    "table-gone",
    "instance-created",  # schema_evolution.manage_capture_instances: the pipeline enabled a new instance
    "instance-retired",  # ... and disabled the old one once the switch had committed
    "column-filled",  # an added column set in the rows no change table carried it for (pipeline/column_fill.py)
)


@dataclass(frozen=True)
class SchemaChange:
    """One detected change (what the pipeline records; ``id`` and times are the database's)."""

    source_table: str
    change: str
    status: str
    capture_instance: str | None = None
    column_name: str | None = None
    old_type: str | None = None
    new_type: str | None = None
    ddl: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.status not in SCHEMA_CHANGE_STATUSES:
            msg = f"schema change status {self.status!r} is not one of {SCHEMA_CHANGE_STATUSES}"
            raise ValueError(msg)
        if self.change not in SCHEMA_CHANGE_KINDS:
            msg = f"schema change {self.change!r} is not one of {SCHEMA_CHANGE_KINDS}"
            raise ValueError(msg)


@dataclass(frozen=True)
class StoredSchemaChange:
    """A row of ``mssql2pg.schema_changes``."""

    id: int
    pipeline: str
    detected_at: datetime
    source_table: str
    capture_instance: str | None
    change: str
    column_name: str | None
    old_type: str | None
    new_type: str | None
    status: str
    applied_at: datetime | None
    ddl: str | None
    detail: str | None

    def as_json(self) -> dict[str, object]:
        """The row as ``mssql2pg schema list --json`` prints it (times in ISO 8601)."""
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "detected_at": self.detected_at.isoformat(),
            "source_table": self.source_table,
            "capture_instance": self.capture_instance,
            "change": self.change,
            "column_name": self.column_name,
            "old_type": self.old_type,
            "new_type": self.new_type,
            "status": self.status,
            "applied_at": None if self.applied_at is None else self.applied_at.isoformat(),
            "ddl": self.ddl,
            "detail": self.detail,
        }


def record_schema_change(conn: PgConnection, pipeline: str, change: SchemaChange) -> tuple[int, bool]:
    """Store ``change`` in the caller's transaction; ``(id, True)`` for a new row. The same change recorded
    before (same table, kind, capture instance, column, old and new type; not ``failed``) is not recorded
    twice - a restart, or a dropped column that stays dropped, finds it again: ``(its id, False)``."""
    existing = fetch(
        conn,
        sql.SELECT_RECORDED_SCHEMA_CHANGE,
        pipeline=pipeline,
        source_table=change.source_table,
        change=change.change,
        capture_instance=change.capture_instance,
        column_name=change.column_name,
        old_type=change.old_type,
        new_type=change.new_type,
    )
    if existing:
        return int(existing[0][0]), False
    ((change_id, _detected_at),) = fetch(
        conn,
        sql.INSERT_SCHEMA_CHANGE,
        pipeline=pipeline,
        source_table=change.source_table,
        capture_instance=change.capture_instance,
        change=change.change,
        column_name=change.column_name,
        old_type=change.old_type,
        new_type=change.new_type,
        status=change.status,
        ddl=change.ddl,
        detail=change.detail,
    )
    return int(change_id), True


def list_schema_changes(conn: PgConnection, pipeline: str, status: str | None = None) -> list[StoredSchemaChange]:
    """The recorded changes of ``pipeline`` (optionally of one status), oldest first."""
    return [
        StoredSchemaChange(*row) for row in fetch(conn, sql.SELECT_SCHEMA_CHANGES, pipeline=pipeline, status=status)
    ]


def count_schema_changes(conn: PgConnection, pipeline: str) -> dict[tuple[str, str], int]:
    """How many changes of ``pipeline`` are recorded, by (source table, status); empty before the first run.
    What ``mssql2pg_schema_changes{table, status}`` exports (whoever changed a status: the pipeline or
    ``mssql2pg schema approve``)."""
    if not control_table_exists(conn, "schema_changes"):
        return {}
    return {(str(t), str(s)): int(n) for t, s, n in fetch(conn, sql.COUNT_SCHEMA_CHANGES, pipeline=pipeline)}


def get_schema_change(conn: PgConnection, pipeline: str, change_id: int) -> StoredSchemaChange | None:
    rows = fetch(conn, sql.SELECT_SCHEMA_CHANGE, pipeline=pipeline, id=change_id)
    return StoredSchemaChange(*rows[0]) if rows else None


def approve_schema_change(conn: PgConnection, pipeline: str, change_id: int) -> None:
    """Mark a reviewed change ``approved`` (the caller re-checked the target first)."""
    conn.run(sql.APPROVE_SCHEMA_CHANGE, pipeline=pipeline, id=change_id)


def fail_schema_change(conn: PgConnection, pipeline: str, change_id: int, detail: str) -> None:
    """Turn a change recorded before its action ran (the pipeline's own capture-instance actions, recorded first
    so that a crash cannot leave the action unrecorded) into ``failed``, with why, when the action was refused."""
    conn.run(sql.FAIL_SCHEMA_CHANGE, pipeline=pipeline, id=change_id, detail=detail)
