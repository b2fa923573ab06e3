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
from mssql2pg.errors import OwnedElsewhereError
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn


def register_table(
    conn: PgConnection,
    pipeline: str,
    *,
    source_table: str,
    capture_instance: str,
    target_table: str,
    group: str = "",
) -> None:
    """Record a replicated table (a paused table stays paused; its capture instance and target are updated).

    ``group`` owns the position of a table recorded for the first time; a table already recorded keeps its
    group until one takes it over (:func:`~mssql2pg.control.checkpoints.move_tables_to_group`)."""
    conn.run(
        sql.REGISTER_TABLE_STATE,
        pipeline=pipeline,
        source_table=source_table,
        capture_instance=capture_instance,
        target_table=target_table,
        group_name=group,
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


def recorded_capture_instance(conn: PgConnection, pipeline: str, table: str) -> str | None:
    """The capture instance a table was last replicated from (the newest one the applier registered)."""
    if not control_table_exists(conn, "table_state"):
        return None
    rows = fetch(conn, sql.SELECT_TABLE_CAPTURE_INSTANCE, pipeline=pipeline, source_table=table)
    return None if not rows or rows[0][0] is None else str(rows[0][0])


def hold_table_position(conn: PgConnection, pipeline: str, table: str, lsn: Lsn) -> None:
    """Keep where a table that pauses now stands (its changes after ``lsn`` wait in CDC): when it is active
    again (``mssql2pg schema approve``), it catches up from there like a resynced table."""
    conn.run(sql.HOLD_TABLE_POSITION, pipeline=pipeline, source_table=table, lsn=lsn.raw)


def registered_tables(conn: PgConnection, pipeline: str) -> frozenset[str]:
    """Every source table ``pipeline`` has recorded (in any state); empty before the first run."""
    if not control_table_exists(conn, "table_state"):
        return frozenset()
    return frozenset(str(row[0]) for row in fetch(conn, sql.SELECT_TABLE_STATES, pipeline=pipeline))


def held_positions(conn: PgConnection, pipeline: str) -> dict[str, Lsn]:
    """Paused tables whose position is held (:func:`hold_table_position`): source table -> the LSN their
    changes wait after, in CDC, until the table resumes."""
    if not control_table_exists(conn, "table_state") or "resume_after" not in control_columns(conn, "table_state"):
        return {}
    return {
        str(row[0]): Lsn.from_bytes(bytes(row[1])) for row in fetch(conn, sql.SELECT_HELD_POSITIONS, pipeline=pipeline)
    }


def inactive_tables(conn: PgConnection, pipeline: str) -> dict[str, tuple[str, str]]:
    """Tables this pipeline must leave alone: source table -> (state, reason). Empty before the first run."""
    if not control_table_exists(conn, "table_state"):
        return {}
    return {row[0]: (row[1], row[2] or "") for row in fetch(conn, sql.SELECT_INACTIVE_TABLES, pipeline=pipeline)}


def resume_positions(conn: PgConnection, pipeline: str, group: str = "") -> dict[str, Lsn]:
    """Active tables of ``group`` with a position of their own (they rejoined after a resync, or moved here from
    another group): source table -> the LSN their changes resume after.

    Empty before the first run. Once the group's checkpoint has passed a position it no longer matters.
    Readers do not migrate, so a target still at version 1 (no ``resume_after`` yet) reads as none, and one at
    version 2 (no groups yet) reads every table's."""
    if not control_table_exists(conn, "table_state"):
        return {}
    columns = control_columns(conn, "table_state")
    if "resume_after" not in columns:
        return {}
    if "group_name" not in columns:
        rows = fetch(conn, sql.SELECT_RESUME_POSITIONS_V2, pipeline=pipeline)
    else:
        rows = fetch(conn, sql.SELECT_RESUME_POSITIONS, pipeline=pipeline, group_name=group)
    return {row[0]: Lsn.from_bytes(row[1]) for row in rows}


def table_groups(conn: PgConnection, pipeline: str) -> dict[str, str]:
    """Source table -> the group whose checkpoint covers it (``''``: no group). Empty before version 4."""
    if not control_table_exists(conn, "table_state") or "group_name" not in control_columns(conn, "table_state"):
        return {}
    return {str(r[0]): str(r[1]) for r in fetch(conn, sql.SELECT_TABLE_GROUP_NAMES, pipeline=pipeline)}


def mark_resynced(
    conn: PgConnection,
    pipeline: str,
    *,
    source_table: str,
    capture_instance: str,
    target_table: str,
    lsn: Lsn,
    reason: str,
    group: str = "",
) -> None:
    """A resync committed a snapshot at ``lsn``: the table is active again and its changes resume after ``lsn``.

    The table stays in the group it was in (``group`` only for a table never recorded): the position is its
    own, whichever group replicates it next."""
    conn.run(
        sql.MARK_RESYNCED,
        pipeline=pipeline,
        group_name=group,
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


class TableBusyError(OwnedElsewhereError):
    """Another connection writes the table: another process of the same pipeline and group (this one is a
    standby until that one's connection ends), or a resync loading it (the running pipeline re-plans without
    the table as soon as it sees the table paused)."""


def claim_tables(conn: PgConnection, pipeline: str, tables: Sequence[str]) -> None:
    """Take the write lock of each table (:data:`~mssql2pg.control.statements.TRY_TABLE_LOCK`) or fail at once."""
    for table in tables:
        if not try_claim_table(conn, pipeline, table):
            msg = (
                f"{table} is being written by another connection: another process running this pipeline and "
                f"group (this one is its standby), or a `mssql2pg resync {table}` in progress"
            )
            raise TableBusyError(
                msg,
                hint="a standby waits and takes over when the other process's connection ends; during a resync "
                "the pipeline leaves the table out once it sees it paused",
            )


def try_claim_table(conn: PgConnection, pipeline: str, table: str) -> bool:
    """Take the table's write lock if it is free (a resync waits on this; appliers fail at once)."""
    return bool(fetch(conn, sql.TRY_TABLE_LOCK, pipeline=pipeline, source_table=table)[0][0])
