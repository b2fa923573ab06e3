"""The control schema ``mssql2pg`` in the target: checkpoints, per-table state and dead letters.

Created idempotently under an advisory lock (two pipelines starting at once must not race on ``CREATE``), and
versioned by a ``schema_version`` row so later releases can migrate it. A database whose control schema is
newer than this code is refused rather than written with assumptions that may no longer hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mssql2pg.errors import IncompatibleTargetError, TerminalError, TransientError
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


def resume_positions(conn: Any, pipeline: str) -> dict[str, Lsn]:
    """Active tables that rejoined after a resync: source table -> the LSN their changes resume after.

    Empty before the first run. Once the pipeline's checkpoint has passed a position it no longer matters."""
    if not control_table_exists(conn, "table_state"):
        return {}
    columns = {r[0] for r in conn.run(sql.SELECT_CONTROL_COLUMNS, t="table_state")}
    if "resume_after" not in columns:
        return {}
    return {row[0]: Lsn.from_bytes(row[1]) for row in conn.run(sql.SELECT_RESUME_POSITIONS, pipeline=pipeline)}


class TableBusyError(TransientError):
    """Another connection writes the table: a resync is loading it. Retried; the running pipeline re-plans
    without the table as soon as it sees the table paused."""


def claim_tables(conn: Any, pipeline: str, tables: Sequence[str]) -> None:
    """Take the write lock of each table (:data:`~mssql2pg.sink.statements.TRY_TABLE_LOCK`) or fail at once."""
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


def try_claim_table(conn: Any, pipeline: str, table: str) -> bool:
    """Take the table's write lock if it is free (a resync waits on this; appliers fail at once)."""
    return bool(conn.run(sql.TRY_TABLE_LOCK, pipeline=pipeline, source_table=table)[0][0])


def read_table_state(conn: Any, pipeline: str, table: str) -> tuple[str, str | None, str | None] | None:
    """(state, reason, remediation) of one table; None when the pipeline never registered it."""
    rows = conn.run(sql.SELECT_TABLE_STATE, pipeline=pipeline, source_table=table)
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


class CheckpointStore(Protocol):
    """Where the applier keeps its position, written in the same PostgreSQL transaction as the data.

    The pipeline has one checkpoint (:class:`PipelineCheckpoint`); a resync writes a table's snapshot position
    instead (``pipeline.resync``), and a table catching up after a resync moves its own resume position."""

    def read(self, conn: Any) -> Lsn: ...

    def claim(self, conn: Any, tables: Sequence[str]) -> None:
        """Take the write locks of ``tables`` on the applier's connection, at every (re)start."""

    def begin(self, conn: Any) -> None:
        """Called right after each ``BEGIN`` of the applier."""

    def write(self, conn: Any, lsn: Lsn, commit_time: datetime | None) -> None: ...


@dataclass
class PipelineCheckpoint:
    """The pipeline's checkpoint row in ``mssql2pg.checkpoints``: only ever moves forward.

    ``resumed``: resynced tables replicated by this pipeline and their resume positions. The first checkpoint at
    or past a position clears it, in the same transaction: from then on the pipeline checkpoint covers the table
    again, and a later start must not mistake the old position for a table that still has to catch up."""

    pipeline: str
    resumed: dict[str, Lsn] = field(default_factory=dict)

    def read(self, conn: Any) -> Lsn:
        return read_checkpoint(conn, self.pipeline)

    def claim(self, conn: Any, tables: Sequence[str]) -> None:
        claim_tables(conn, self.pipeline, tables)

    def begin(self, conn: Any) -> None:
        pass

    def write(self, conn: Any, lsn: Lsn, commit_time: datetime | None) -> None:
        advance_checkpoint(conn, self.pipeline, lsn, commit_time)
        if self.resumed:
            passed = [table for table, position in self.resumed.items() if position <= lsn]
            for table in passed:
                conn.run(sql.CLEAR_RESUME_POSITION, pipeline=self.pipeline, source_table=table, lsn=lsn.raw)
                del self.resumed[table]


@dataclass(frozen=True)
class ResumePositions:
    """Tables catching up after a resync: each one's ``resume_after`` moves forward (never back) with the data."""

    pipeline: str
    positions: dict[str, Lsn]

    def read(self, conn: Any) -> Lsn:
        """The lowest committed position of these tables (after a restart, the reader's per-table starts skip
        what a table further ahead already has)."""
        stored = resume_positions(conn, self.pipeline)
        return min(stored.get(table, position) for table, position in self.positions.items())

    def claim(self, conn: Any, tables: Sequence[str]) -> None:
        claim_tables(conn, self.pipeline, tables)

    def begin(self, conn: Any) -> None:
        pass

    def write(self, conn: Any, lsn: Lsn, commit_time: datetime | None) -> None:
        for table in self.positions:
            conn.run(sql.ADVANCE_RESUME_POSITION, pipeline=self.pipeline, source_table=table, lsn=lsn.raw)
