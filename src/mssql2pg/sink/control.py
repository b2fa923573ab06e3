"""The control schema ``mssql2pg`` in the target: checkpoints, per-table state and dead letters.

Created idempotently under an advisory lock (two pipelines starting at once must not race on ``CREATE``), and
versioned by a ``schema_version`` row so later releases can migrate it. A database whose control schema is
newer than this code is refused rather than written with assumptions that may no longer hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mssql2pg.errors import IncompatibleTargetError, TerminalError
from mssql2pg.positions import Lsn
from mssql2pg.sink import statements as sql
from mssql2pg.sink.schema import TargetTable

CONTROL_COMPONENT = "control"
CONTROL_VERSION = 1


def ensure_control_schema(conn: Any) -> None:
    """Create the control schema if missing (inside the caller's transaction)."""
    conn.run(sql.CONTROL_LOCK)
    for statement in sql.CREATE_CONTROL:
        conn.run(statement)
    conn.run(sql.INSERT_SCHEMA_VERSION, component=CONTROL_COMPONENT, version=CONTROL_VERSION)
    rows = conn.run(sql.SELECT_SCHEMA_VERSION, component=CONTROL_COMPONENT)
    version = int(rows[0][0])
    if version > CONTROL_VERSION:
        msg = (
            f"the control schema {sql.CONTROL_SCHEMA!r} is at version {version}; this mssql2pg knows {CONTROL_VERSION}"
        )
        raise IncompatibleTargetError(msg, hint="upgrade mssql2pg to the release that created this target")


def read_checkpoint(conn: Any, pipeline: str) -> Lsn:
    """The last committed LSN of ``pipeline``; :attr:`Lsn.NULL` when it never committed."""
    rows = conn.run(sql.SELECT_CHECKPOINT, pipeline=pipeline)
    return Lsn.from_bytes(rows[0][0]) if rows else Lsn.NULL


def advance_checkpoint(conn: Any, pipeline: str, lsn: Lsn, commit_time: datetime | None = None) -> None:
    """Move the checkpoint to ``lsn`` in the caller's transaction. Moving it backwards is an error."""
    if lsn.raw is None:
        msg = "cannot store the NULL LSN as a checkpoint"
        raise ValueError(msg)
    naive = commit_time.replace(tzinfo=None) if commit_time is not None else None
    rows = conn.run(sql.ADVANCE_CHECKPOINT, pipeline=pipeline, lsn=lsn.raw, lsn_text=str(lsn), commit_time=naive)
    if not rows:
        stored = read_checkpoint(conn, pipeline)
        msg = f"checkpoint of pipeline {pipeline!r} would move backwards from {stored} to {lsn}"
        raise TerminalError(
            msg,
            hint="another process is writing this pipeline's checkpoint, or the source was restored to an older "
            "state; make sure only one pipeline runs under this name, then restart",
        )


def register_tables(conn: Any, pipeline: str, tables: Sequence[TargetTable]) -> None:
    """Record each replicated table in ``table_state`` (a paused table stays paused)."""
    for table in tables:
        conn.run(
            sql.REGISTER_TABLE_STATE,
            pipeline=pipeline,
            source_table=str(table.source),
            capture_instance=table.capture_instance.name,
            target_table=f"{table.schema}.{table.name}",
        )


def set_table_state(conn: Any, pipeline: str, source_table: str, state: str, *, reason: str, remediation: str) -> None:
    """Record a table's state (``active`` | ``paused`` | ``needs-resync``) with the reason and what to do."""
    conn.run(
        sql.SET_TABLE_STATE,
        pipeline=pipeline,
        source_table=source_table,
        state=state,
        reason=reason,
        remediation=remediation,
    )


def control_table_exists(conn: Any, table: str) -> bool:
    """Whether ``mssql2pg.<table>`` exists: before a pipeline's first start the control schema is not there yet,
    and readers (check, status, dlq) must say "nothing yet" instead of failing."""
    return bool(conn.run(sql.CONTROL_TABLE_EXISTS, t=f"{sql.CONTROL_SCHEMA}.{table}")[0][0])


def inactive_tables(conn: Any, pipeline: str) -> dict[str, tuple[str, str]]:
    """Tables this pipeline must leave alone: source table -> (state, reason). Empty before the first run."""
    if not control_table_exists(conn, "table_state"):
        return {}
    return {row[0]: (row[1], row[2] or "") for row in conn.run(sql.SELECT_INACTIVE_TABLES, pipeline=pipeline)}
