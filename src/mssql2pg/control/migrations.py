"""Numbered migrations of the control schema ``mssql2pg``: each version adds what it adds, in order.

:func:`ensure_control_schema` brings a target up to :data:`CONTROL_VERSION` in place, inside the caller's
transaction and under an advisory lock, so two processes starting at once neither race on ``CREATE`` nor apply
a version twice: the second one waits, then finds the work done. A target whose control schema is newer than
this code is refused rather than written with assumptions that may no longer hold.

A new version is a new :class:`Migration` at the end of :data:`MIGRATIONS` (its statements in
:mod:`mssql2pg.control.statements`); a released one is never edited, because targets out there already carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from mssql2pg.control import statements as sql
from mssql2pg.errors import IncompatibleTargetError
from mssql2pg.pgconn import PgConnection, fetch

log = structlog.get_logger(component="control")


@dataclass(frozen=True)
class Migration:
    version: int
    adds: str  # what this version adds, in a few words (logged and shown in errors)
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "checkpoints, table_state and dead_letters", sql.MIGRATION_1),
    Migration(2, "table_state.resume_after (mssql2pg resync)", sql.MIGRATION_2),
    Migration(3, "reconciliation_runs (mssql2pg reconcile)", sql.MIGRATION_3),
    Migration(4, "a position per table group: checkpoints and table_state keyed by group_name", sql.MIGRATION_4),
    Migration(5, "snapshots: progress of each table's initial load (snapshot.mode: initial)", sql.MIGRATION_5),
    Migration(6, "schema_changes (schema evolution)", sql.MIGRATION_6),
    # --- issue 17 point 1 (target written by others) ---
    Migration(7, "target_conflicts: writes to the target by someone else, per table and kind", sql.MIGRATION_7),
    Migration(8, "dead_letters.last_error: a failed retry's error, kept apart from the letter's own", sql.MIGRATION_8),
)

CONTROL_VERSION = MIGRATIONS[-1].version
"""The version this code writes and expects."""


def installed_version(conn: PgConnection) -> int:
    """The version the target's control schema records; 0 when there is none yet."""
    if not control_table_exists(conn, "schema_version"):
        return 0
    rows = conn.run(sql.SELECT_SCHEMA_VERSION, component=sql.CONTROL_COMPONENT)
    return int(rows[0][0]) if rows else 0


def ensure_control_schema(conn: PgConnection) -> list[int]:
    """Apply the missing migrations in order, inside the caller's transaction; return the versions applied.

    The advisory lock is held until the caller commits or rolls back, so the caller must be in a transaction
    (``BEGIN`` first) for concurrent starts to be serialised."""
    conn.run(sql.CONTROL_LOCK)
    current = installed_version(conn)
    if current > CONTROL_VERSION:
        msg = (
            f"the control schema {sql.CONTROL_SCHEMA!r} is at version {current}; this mssql2pg knows {CONTROL_VERSION}"
        )
        raise IncompatibleTargetError(msg, hint="upgrade mssql2pg to the release that created this target")
    missing = [m for m in MIGRATIONS if m.version > current]
    for migration in missing:
        for statement in migration.statements:
            conn.run(statement)
    if missing:
        conn.run(sql.SET_SCHEMA_VERSION, component=sql.CONTROL_COMPONENT, version=CONTROL_VERSION)
        log.info(
            "control schema migrated",
            from_version=current,
            to_version=CONTROL_VERSION,
            added="; ".join(m.adds for m in missing),
        )
    return [m.version for m in missing]


def control_table_exists(conn: PgConnection, table: str) -> bool:
    """Whether ``mssql2pg.<table>`` exists: before a pipeline's first start the control schema is not there yet,
    and readers (check, status, dlq) must say "nothing yet" instead of failing."""
    return bool(fetch(conn, sql.CONTROL_TABLE_EXISTS, t=f"{sql.CONTROL_SCHEMA}.{table}")[0][0])


def control_columns(conn: PgConnection, table: str) -> set[str]:
    """The columns ``mssql2pg.<table>`` has: readers never migrate, so they look before reading a later column."""
    return {row[0] for row in fetch(conn, sql.SELECT_CONTROL_COLUMNS, t=table)}
