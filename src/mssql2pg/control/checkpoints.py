"""Positions in ``mssql2pg.checkpoints`` and the stores the applier writes its position through.

The checkpoint is written in the same PostgreSQL transaction as the data it covers and only ever moves
forward: a crash loses nothing and duplicates nothing, and a second writer of one pipeline is caught instead
of silently moving the position back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mssql2pg.control import statements as sql
from mssql2pg.control.tables import advance_resume_position, claim_tables, clear_resume_position, resume_positions
from mssql2pg.errors import TerminalError
from mssql2pg.pgconn import PgConnection
from mssql2pg.positions import Lsn


def read_checkpoint(conn: PgConnection, pipeline: str) -> Lsn:
    """The last committed LSN of ``pipeline``; :attr:`Lsn.NULL` when it never committed."""
    rows = conn.run(sql.SELECT_CHECKPOINT, pipeline=pipeline)
    return Lsn.from_bytes(rows[0][0]) if rows else Lsn.NULL


def advance_checkpoint(conn: PgConnection, pipeline: str, lsn: Lsn, commit_time: datetime | None = None) -> None:
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


class CheckpointStore(Protocol):
    """Where the applier keeps its position, written in the same PostgreSQL transaction as the data.

    The pipeline has one checkpoint (:class:`PipelineCheckpoint`); a resync writes a table's snapshot position
    instead (``pipeline.resync``), and a table catching up after a resync moves its own resume position."""

    def read(self, conn: PgConnection) -> Lsn: ...

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        """Take the write locks of ``tables`` on the applier's connection, at every (re)start."""

    def begin(self, conn: PgConnection) -> None:
        """Called right after each ``BEGIN`` of the applier."""

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None: ...


@dataclass
class PipelineCheckpoint:
    """The pipeline's checkpoint row in ``mssql2pg.checkpoints``: only ever moves forward.

    ``resumed``: resynced tables replicated by this pipeline and their resume positions. The first checkpoint at
    or past a position clears it, in the same transaction: from then on the pipeline checkpoint covers the table
    again, and a later start must not mistake the old position for a table that still has to catch up."""

    pipeline: str
    resumed: dict[str, Lsn] = field(default_factory=dict)

    def read(self, conn: PgConnection) -> Lsn:
        return read_checkpoint(conn, self.pipeline)

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        claim_tables(conn, self.pipeline, tables)

    def begin(self, conn: PgConnection) -> None:
        pass

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None:
        advance_checkpoint(conn, self.pipeline, lsn, commit_time)
        if self.resumed:
            passed = [table for table, position in self.resumed.items() if position <= lsn]
            for table in passed:
                clear_resume_position(conn, self.pipeline, table, lsn)
                del self.resumed[table]


@dataclass(frozen=True)
class ResumePositions:
    """Tables catching up after a resync: each one's ``resume_after`` moves forward (never back) with the data."""

    pipeline: str
    positions: dict[str, Lsn]

    def read(self, conn: PgConnection) -> Lsn:
        """The lowest committed position of these tables (after a restart, the reader's per-table starts skip
        what a table further ahead already has)."""
        stored = resume_positions(conn, self.pipeline)
        return min(stored.get(table, position) for table, position in self.positions.items())

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        claim_tables(conn, self.pipeline, tables)

    def begin(self, conn: PgConnection) -> None:
        pass

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None:
        for table in self.positions:
            advance_resume_position(conn, self.pipeline, table, lsn)
