"""The read model of ``mssql2pg status``: what the control schema says about one pipeline.

Its checkpoint row, each table's state (with the resume position of a table a resync loaded, until the
checkpoint covers it) and its dead letters by status - counted per pipeline, exactly as the
``mssql2pg_dead_letters`` gauge counts them. It only reads, and works before the first start (nothing yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mssql2pg.control import statements as sql
from mssql2pg.control.deadletters import count_dead_letters_by_status
from mssql2pg.control.migrations import control_table_exists
from mssql2pg.control.tables import resume_positions
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn


@dataclass(frozen=True)
class CheckpointRow:
    lsn: Lsn  # Lsn.NULL while the pipeline never committed
    commit_time: datetime | None  # source commit time of the last transaction it covers
    updated_at: datetime | None  # when it was written


@dataclass(frozen=True)
class TableStatus:
    source_table: str
    target_table: str
    state: str
    reason: str | None
    remediation: str | None
    resume_after: Lsn | None  # resynced, and the pipeline checkpoint does not cover it yet


@dataclass(frozen=True)
class PipelineStatus:
    created: bool  # False: no control schema yet, the pipeline never ran against this target
    checkpoint: CheckpointRow
    tables: tuple[TableStatus, ...]
    dead_letters: dict[str, int]  # status -> count, this pipeline's only


_NO_CHECKPOINT = CheckpointRow(Lsn.NULL, None, None)


def read_status(conn: PgConnection, pipeline: str) -> PipelineStatus:
    """Everything ``status`` shows from the target for ``pipeline``."""
    if not control_table_exists(conn, "checkpoints"):
        return PipelineStatus(False, _NO_CHECKPOINT, (), {})
    rows = conn.run(sql.SELECT_CHECKPOINT_ROW, pipeline=pipeline)
    checkpoint = CheckpointRow(Lsn.from_bytes(rows[0][0]), rows[0][1], rows[0][2]) if rows else _NO_CHECKPOINT
    positions = resume_positions(conn, pipeline)
    tables = tuple(
        TableStatus(r[0], r[1], r[2], r[3], r[4], positions.get(r[0]))
        for r in fetch(conn, sql.SELECT_TABLE_STATES, pipeline=pipeline)
    )
    return PipelineStatus(True, checkpoint, tables, count_dead_letters_by_status(conn, pipeline))
