"""The read model of ``mssql2pg status``: what the control schema says about one pipeline.

Its checkpoint row (of one group, and every group's own), each table's state and group (with the resume
position of a table a resync loaded or that moved between groups, until its group's checkpoint covers it, and the
progress of its initial snapshot) and
its dead letters by status - counted per pipeline, exactly as the ``mssql2pg_dead_letters`` gauge counts them -
and the conflicts with writes to the target by someone else, per table and kind.
It only reads, and works before the first start (nothing yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mssql2pg.control import statements as sql
from mssql2pg.control.checkpoints import NO_CHECKPOINT, CheckpointRow, group_checkpoints, read_checkpoint_row
from mssql2pg.control.conflicts import target_conflicts
from mssql2pg.control.deadletters import count_dead_letters_by_status
from mssql2pg.control.migrations import control_table_exists
from mssql2pg.control.snapshots import SnapshotProgress, snapshots
from mssql2pg.control.tables import resume_positions, table_groups
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn


@dataclass(frozen=True)
class TableStatus:
    source_table: str
    target_table: str
    state: str
    reason: str | None
    remediation: str | None
    resume_after: Lsn | None  # resynced or moved here, and its group's checkpoint does not cover it yet
    group: str = ""  # the group whose checkpoint covers the table ('': no group)
    snapshot: SnapshotProgress | None = None  # its initial snapshot (loading, or done), if it had one
    conflicts: dict[str, int] = field(default_factory=dict)  # writes to the target by someone else: kind -> count


@dataclass(frozen=True)
class GroupWriter:
    """The session that holds a group's write locks: a running ``mssql2pg run`` (or a resync)."""

    application_name: str  # ``mssql2pg host:pid`` (see mssql2pg.instance)
    client_address: str | None  # None over a unix socket
    since: datetime | None  # when that session connected; None when the server does not show it to this role


@dataclass(frozen=True)
class PipelineStatus:
    created: bool  # False: no control schema yet, the pipeline never ran against this target
    checkpoint: CheckpointRow  # of the group asked for (inherited from the row without a group while it has none)
    tables: tuple[TableStatus, ...]
    dead_letters: dict[str, int]  # status -> count, this pipeline's only
    group: str = ""  # the group asked for ('': a process without pipeline.group)
    groups: dict[str, CheckpointRow] = field(default_factory=dict)  # every group's own checkpoint row
    writers: dict[str, GroupWriter] = field(default_factory=dict)  # group -> the session writing it now


def read_status(conn: PgConnection, pipeline: str, group: str = "") -> PipelineStatus:
    """Everything ``status`` shows from the target for ``pipeline`` (and its ``group``)."""
    if not control_table_exists(conn, "checkpoints"):
        return PipelineStatus(False, NO_CHECKPOINT, (), {}, group)
    checkpoint = read_checkpoint_row(conn, pipeline, group)
    groups = table_groups(conn, pipeline)
    positions: dict[str, Lsn] = {}
    for name in {group, *groups.values()}:
        positions.update(resume_positions(conn, pipeline, name))
    loads = snapshots(conn, pipeline)
    conflicts: dict[str, dict[str, int]] = {}
    for count in target_conflicts(conn, pipeline):
        conflicts.setdefault(count.source_table, {})[count.kind] = count.conflicts
    tables = tuple(
        TableStatus(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            positions.get(r[0]),
            groups.get(r[0], ""),
            loads.get(r[0]),
            conflicts.get(r[0], {}),
        )
        for r in fetch(conn, sql.SELECT_TABLE_STATES, pipeline=pipeline)
    )
    return PipelineStatus(
        True,
        checkpoint,
        tables,
        count_dead_letters_by_status(conn, pipeline),
        group,
        group_checkpoints(conn, pipeline),
        _writers(conn, pipeline) if groups else {},
    )


def group_writers(conn: PgConnection, pipeline: str) -> dict[str, GroupWriter]:
    """Group -> the session that writes it now (groups nobody writes are absent; none before the first start)."""
    return _writers(conn, pipeline) if table_groups(conn, pipeline) else {}


def _writers(conn: PgConnection, pipeline: str) -> dict[str, GroupWriter]:
    """:func:`group_writers` once the caller knows the pipeline has recorded table groups."""
    return {
        str(r[0]): GroupWriter(str(r[1] or ""), r[2], r[3])
        for r in fetch(conn, sql.SELECT_GROUP_WRITERS, pipeline=pipeline)
    }
