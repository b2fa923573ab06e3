"""Positions in ``mssql2pg.checkpoints`` and the stores the applier writes its position through.

Each table group of a pipeline (``pipeline.group``; ``''`` without one) has its own checkpoint row, written in
the same PostgreSQL transaction as the data it covers, and only ever moving forward: a crash loses nothing and
duplicates nothing, and a second writer of one group is caught instead of silently moving the position back.
A group reads only its own row, or the row without a group while it has none (:func:`read_checkpoint_row`);
a table that changes group takes its position with it (:func:`move_tables_to_group`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from mssql2pg.control import statements as sql
from mssql2pg.control.migrations import control_columns, control_table_exists
from mssql2pg.control.tables import (
    advance_resume_position,
    claim_tables,
    clear_resume_position,
    resume_positions,
    table_groups,
)
from mssql2pg.errors import TerminalError
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn

log = structlog.get_logger(component="control")


@dataclass(frozen=True)
class CheckpointRow:
    lsn: Lsn  # Lsn.NULL while the pipeline (group) never committed
    commit_time: datetime | None  # source commit time of the last transaction it covers
    updated_at: datetime | None  # when it was written


NO_CHECKPOINT = CheckpointRow(Lsn.NULL, None, None)


def read_checkpoint_row(conn: PgConnection, pipeline: str, group: str = "") -> CheckpointRow:
    """The checkpoint row of ``pipeline``'s ``group`` (``''``: a process without ``pipeline.group``).

    A group that never committed inherits the row without a group: on a target upgraded from version 2 that is
    the one position the pipeline had, so no group restarts from zero nor skips what another group had passed
    (a table that moved between groups keeps its own position: :func:`move_tables_to_group`). A target before
    version 4 has one row per pipeline (readers never migrate)."""
    if "group_name" in control_columns(conn, "checkpoints"):
        rows = conn.run(sql.SELECT_CHECKPOINT_ROW, pipeline=pipeline, group_name=group)
    else:
        rows = conn.run(sql.SELECT_CHECKPOINT_ROW_V2, pipeline=pipeline)
    return CheckpointRow(Lsn.from_bytes(rows[0][0]), rows[0][1], rows[0][2]) if rows else NO_CHECKPOINT


def read_checkpoint(conn: PgConnection, pipeline: str, group: str = "") -> Lsn:
    """The last committed LSN of ``pipeline``'s ``group`` (see :func:`read_checkpoint_row`); :attr:`Lsn.NULL`
    when it never committed."""
    return read_checkpoint_row(conn, pipeline, group).lsn


def table_checkpoint(conn: PgConnection, pipeline: str, table: str) -> Lsn:
    """The checkpoint of the group whose checkpoint covers ``table`` (``table_state.group_name``; the row
    without a group for a table never registered or before version 4): how far ``table`` is known to be applied,
    which is what a reader of one table (``mssql2pg reconcile``) must wait for."""
    return read_checkpoint(conn, pipeline, table_groups(conn, pipeline).get(table, ""))


def group_checkpoints(conn: PgConnection, pipeline: str) -> dict[str, CheckpointRow]:
    """Every group's own checkpoint row of ``pipeline`` (``''``: the row without a group)."""
    if not control_table_exists(conn, "checkpoints"):
        return {}
    if "group_name" not in control_columns(conn, "checkpoints"):
        rows = conn.run(sql.SELECT_CHECKPOINT_ROW_V2, pipeline=pipeline)
        return {"": CheckpointRow(Lsn.from_bytes(rows[0][0]), rows[0][1], rows[0][2])} if rows else {}
    return {
        str(r[0]): CheckpointRow(Lsn.from_bytes(r[1]), r[2], r[3])
        for r in fetch(conn, sql.SELECT_GROUP_CHECKPOINTS, pipeline=pipeline)
    }


def advance_checkpoint(
    conn: PgConnection, pipeline: str, lsn: Lsn, commit_time: datetime | None = None, *, group: str = ""
) -> None:
    """Move the checkpoint of ``pipeline``'s ``group`` to ``lsn`` in the caller's transaction. Moving it
    backwards is an error."""
    if lsn.raw is None:
        msg = "cannot store the NULL LSN as a checkpoint"
        raise ValueError(msg)
    naive = commit_time.replace(tzinfo=None) if commit_time is not None else None
    rows = conn.run(
        sql.ADVANCE_CHECKPOINT,
        pipeline=pipeline,
        group_name=group,
        lsn=lsn.raw,
        lsn_text=str(lsn),
        commit_time=naive,
    )
    if not rows:
        stored = read_checkpoint(conn, pipeline, group)
        which = f"pipeline {pipeline!r}" + (f" group {group!r}" if group else "")
        msg = f"checkpoint of {which} would move backwards from {stored} to {lsn}"
        raise TerminalError(
            msg,
            hint="another process is writing this pipeline's checkpoint, or the source was restored to an older "
            "state; make sure only one pipeline runs under this name, then restart",
        )


BEFORE_ANY_CHANGE = Lsn.from_bytes(bytes(10))
"""The position of a table no group ever committed a change for: everything after the start of the log."""


def move_tables_to_group(
    conn: PgConnection, pipeline: str, group: str, tables: Sequence[str], checkpoint: Lsn
) -> dict[str, Lsn]:
    """Make ``group`` the owner of the position of ``tables`` that another group's checkpoint covered.

    The rule for a table that moved between groups (a changed ``tables[].group``, or a process started with or
    without ``pipeline.group``): its position is the one it had (its own ``resume_after`` if it has one, else
    the checkpoint of the group it was in), and it keeps it in its new group as its ``resume_after``. Behind the
    new group's ``checkpoint`` it catches up on its own first; ahead of it, the reader skips its changes up to
    that position. So a move neither loses nor repeats a change. Run under the tables' write locks (no other
    process writes them meanwhile), in the caller's transaction. Returns the tables whose position is not
    ``checkpoint`` (the reader must be planned with them); a table already at ``checkpoint`` just changes group."""
    moved: dict[str, Lsn] = {}
    if not tables:
        return moved
    for table, old_group, resume_after in fetch(
        conn, sql.SELECT_TABLE_GROUPS, pipeline=pipeline, group_name=group, tables=list(tables)
    ):
        if resume_after is not None:
            position = Lsn.from_bytes(resume_after)
        else:
            position = read_checkpoint(conn, pipeline, str(old_group))
            if position.is_null:  # its group never committed: nothing of it is applied
                position = checkpoint if checkpoint.is_null else BEFORE_ANY_CHANGE
        keep = None if position == checkpoint else position
        conn.run(
            sql.MOVE_TABLE_TO_GROUP,
            pipeline=pipeline,
            source_table=table,
            group_name=group,
            lsn=keep.raw if keep is not None else None,
        )
        log.info(
            "table moved to this group; it keeps its own position",
            table=table,
            from_group=old_group or None,
            to_group=group or None,
            position=str(position),
            group_checkpoint=str(checkpoint),
        )
        if keep is not None:
            moved[str(table)] = keep
    return moved


class CheckpointStore(Protocol):
    """Where the applier keeps its position, written in the same PostgreSQL transaction as the data.

    Each group of a pipeline has one checkpoint (:class:`PipelineCheckpoint`); a resync writes a table's snapshot
    position instead (``pipeline.resync``), and a table catching up after a resync moves its own resume
    position."""

    @property
    def group(self) -> str:
        """The table group whose position this is (``''``: a process without ``pipeline.group``)."""
        ...

    def read(self, conn: PgConnection) -> Lsn: ...

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        """Take the write locks of ``tables`` on the applier's connection, at every (re)start."""

    def adopt(self, conn: PgConnection, tables: Sequence[str]) -> dict[str, Lsn]:
        """Under the write locks, in the start transaction: take over the position of those of ``tables`` another
        group's checkpoint covered (:func:`move_tables_to_group`). Returns the ones whose own position the plan
        does not know yet: the pipeline must re-plan its reader with them."""
        ...

    def begin(self, conn: PgConnection) -> None:
        """Called right after each ``BEGIN`` of the applier."""

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None: ...


@dataclass
class PipelineCheckpoint:
    """The checkpoint row of a pipeline's group in ``mssql2pg.checkpoints``: only ever moves forward.

    ``resumed``: tables of this group with a position of their own (resynced, or moved here from another group)
    and those positions. The first checkpoint at or past a position clears it, in the same transaction: from
    then on the group checkpoint covers the table again, and a later start must not mistake the old position
    for a table that still has to catch up."""

    pipeline: str
    resumed: dict[str, Lsn] = field(default_factory=dict)
    group: str = ""

    def read(self, conn: PgConnection) -> Lsn:
        return read_checkpoint(conn, self.pipeline, self.group)

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        claim_tables(conn, self.pipeline, tables)

    def adopt(self, conn: PgConnection, tables: Sequence[str]) -> dict[str, Lsn]:
        moved = move_tables_to_group(conn, self.pipeline, self.group, tables, self.read(conn))
        return {table: position for table, position in moved.items() if self.resumed.get(table) != position}

    def begin(self, conn: PgConnection) -> None:
        pass

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None:
        advance_checkpoint(conn, self.pipeline, lsn, commit_time, group=self.group)
        if self.resumed:
            passed = [table for table, position in self.resumed.items() if position <= lsn]
            for table in passed:
                clear_resume_position(conn, self.pipeline, table, lsn)
                del self.resumed[table]


@dataclass(frozen=True)
class ResumePositions:
    """Tables catching up after a resync or a move between groups: each one's ``resume_after`` moves forward
    (never back) with the data."""

    pipeline: str
    positions: dict[str, Lsn]
    group: str = ""

    def read(self, conn: PgConnection) -> Lsn:
        """The lowest committed position of these tables (after a restart, the reader's per-table starts skip
        what a table further ahead already has)."""
        stored = resume_positions(conn, self.pipeline, self.group)
        return min(stored.get(table, position) for table, position in self.positions.items())

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        claim_tables(conn, self.pipeline, tables)

    def adopt(self, conn: PgConnection, tables: Sequence[str]) -> dict[str, Lsn]:
        return {}  # the pipeline planned these tables in its group before catching them up

    def begin(self, conn: PgConnection) -> None:
        pass

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None:
        for table in self.positions:
            advance_resume_position(conn, self.pipeline, table, lsn)
