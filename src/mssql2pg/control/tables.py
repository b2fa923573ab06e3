"""Per-table state in ``mssql2pg.table_state`` and the write lock of each replicated table.

A table is ``active``, ``paused`` or ``needs-resync``, with the reason and what the operator should run. A table
a resync loaded carries ``resume_after``: the LSN its changes resume after, until the pipeline checkpoint covers
it. Whatever writes a table (the applier of a running pipeline, or a resync) holds its write lock, a session
advisory lock per (pipeline, source table) that the server drops when the connection ends.

Tables are named by plain values (the source table as ``schema.name``, the capture instance, the target table as
``schema.name``), so that this package depends on nothing that builds them.
"""

from __future__ import annotations

from collections.abc import Sequence

from mssql2pg.control import statements as sql
from mssql2pg.control.migrations import control_columns, control_table_exists
from mssql2pg.errors import TransientError
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn


def register_table(
    conn: PgConnection, pipeline: str, *, source_table: str, capture_instance: str, target_table: str
) -> None:
    """Record a replicated table (a paused table stays paused; its capture instance and target are updated)."""
    conn.run(
        sql.REGISTER_TABLE_STATE,
        pipeline=pipeline,
        source_table=source_table,
        capture_instance=capture_instance,
        target_table=target_table,
    )


def set_table_state(
    conn: PgConnection, pipeline: str, source_table: str, state: str, *, reason: str, remediation: str
) -> None:
    """Record a table's state (``active`` | ``paused`` | ``needs-resync``) with the reason and what to do."""
    conn.run(
        sql.SET_TABLE_STATE,
        pipeline=pipeline,
        source_table=source_table,
        state=state,
        reason=reason,
        remediation=remediation,
    )


def read_table_state(conn: PgConnection, pipeline: str, table: str) -> tuple[str, str | None, str | None] | None:
    """(state, reason, remediation) of one table; None when the pipeline never registered it."""
    rows = conn.run(sql.SELECT_TABLE_STATE, pipeline=pipeline, source_table=table)
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


def inactive_tables(conn: PgConnection, pipeline: str) -> dict[str, tuple[str, str]]:
    """Tables this pipeline must leave alone: source table -> (state, reason). Empty before the first run."""
    if not control_table_exists(conn, "table_state"):
        return {}
    return {row[0]: (row[1], row[2] or "") for row in fetch(conn, sql.SELECT_INACTIVE_TABLES, pipeline=pipeline)}


def resume_positions(conn: PgConnection, pipeline: str) -> dict[str, Lsn]:
    """Active tables that rejoined after a resync: source table -> the LSN their changes resume after.

    Empty before the first run. Once the pipeline's checkpoint has passed a position it no longer matters.
    Readers do not migrate, so a target still at version 1 (no ``resume_after`` yet) reads as none."""
    if not control_table_exists(conn, "table_state") or "resume_after" not in control_columns(conn, "table_state"):
        return {}
    return {row[0]: Lsn.from_bytes(row[1]) for row in fetch(conn, sql.SELECT_RESUME_POSITIONS, pipeline=pipeline)}


def mark_resynced(
    conn: PgConnection,
    pipeline: str,
    *,
    source_table: str,
    capture_instance: str,
    target_table: str,
    lsn: Lsn,
    reason: str,
) -> None:
    """A resync committed a snapshot at ``lsn``: the table is active again and its changes resume after ``lsn``."""
    conn.run(
        sql.MARK_RESYNCED,
        pipeline=pipeline,
        source_table=source_table,
        capture_instance=capture_instance,
        target_table=target_table,
        reason=reason,
        lsn=lsn.raw,
    )


def advance_resume_position(conn: PgConnection, pipeline: str, source_table: str, lsn: Lsn) -> None:
    """Move a catching-up table's ``resume_after`` forward to ``lsn`` (never back)."""
    conn.run(sql.ADVANCE_RESUME_POSITION, pipeline=pipeline, source_table=source_table, lsn=lsn.raw)


def clear_resume_position(conn: PgConnection, pipeline: str, source_table: str, lsn: Lsn) -> None:
    """The pipeline checkpoint reached ``lsn``, at or past the table's ``resume_after``: forget the position."""
    conn.run(sql.CLEAR_RESUME_POSITION, pipeline=pipeline, source_table=source_table, lsn=lsn.raw)


class TableBusyError(TransientError):
    """Another connection writes the table: a resync is loading it. Retried; the running pipeline re-plans
    without the table as soon as it sees the table paused."""


def claim_tables(conn: PgConnection, pipeline: str, tables: Sequence[str]) -> None:
    """Take the write lock of each table (:data:`~mssql2pg.control.statements.TRY_TABLE_LOCK`) or fail at once."""
    for table in tables:
        if not try_claim_table(conn, pipeline, table):
            msg = (
                f"{table} is being written by another connection: a `mssql2pg resync {table}` in progress, or "
                "another process running this pipeline"
            )
            raise TableBusyError(
                msg,
                hint="the pipeline retries; during a resync it leaves the table out once it sees it paused. Run "
                "one process per pipeline name (and per pipeline.group)",
            )


def try_claim_table(conn: PgConnection, pipeline: str, table: str) -> bool:
    """Take the table's write lock if it is free (a resync waits on this; appliers fail at once)."""
    return bool(fetch(conn, sql.TRY_TABLE_LOCK, pipeline=pipeline, source_table=table)[0][0])
