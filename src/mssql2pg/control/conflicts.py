"""Conflicts with writes to the target by someone else, counted per table and kind in
``mssql2pg.target_conflicts`` (control migration 7).

The applier adds its counts in the PostgreSQL transaction that applies the changes and moves the checkpoint, so
each conflict is counted exactly once whatever restarts; ``mssql2pg status`` reads them for every process of a
pipeline. The kinds are :data:`mssql2pg.model.TARGET_CONFLICT_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from mssql2pg.control import statements as sql
from mssql2pg.control.migrations import control_table_exists
from mssql2pg.pgconn import PgConnection, fetch


@dataclass(frozen=True)
class ConflictCount:
    source_table: str
    kind: str
    conflicts: int
    last_at: datetime


def count_target_conflicts(conn: PgConnection, pipeline: str, counts: Mapping[tuple[str, str], int]) -> None:
    """Add ``counts`` ((source table, kind) -> n) to the stored totals, in the caller's transaction."""
    for (table, kind), n in sorted(counts.items()):
        if n:
            conn.run(sql.COUNT_TARGET_CONFLICTS, pipeline=pipeline, source_table=table, kind=kind, n=n)


def target_conflicts(conn: PgConnection, pipeline: str) -> list[ConflictCount]:
    """The stored totals of ``pipeline`` (none before the control schema has version 7)."""
    if not control_table_exists(conn, "target_conflicts"):
        return []
    return [
        ConflictCount(str(t), str(k), int(n), at)
        for t, k, n, at in fetch(conn, sql.SELECT_TARGET_CONFLICTS, pipeline=pipeline)
    ]
