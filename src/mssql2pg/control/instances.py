"""The live processes of a pipeline that spread its table groups (``pipeline.group: auto``).

Each holds a session advisory lock keyed by the pipeline and its ``host:pid`` on a target connection of its own,
for as long as it lives; counting the holders tells every process how many share the groups (its fair share is
the number of groups over that). The server keeps the record: a process that dies, or loses its connection,
stops counting at once, with nothing to clean up.
"""

from __future__ import annotations

from mssql2pg.control import statements as sql
from mssql2pg.pgconn import PgConnection, fetch


def register_instance(conn: PgConnection, pipeline: str, instance: str) -> bool:
    """Count this process among the live ones for as long as ``conn`` stays open. False only if another process's
    key hashes the same (it is counted, and so is this one: see :func:`live_instances`)."""
    return bool(fetch(conn, sql.REGISTER_INSTANCE, pipeline=pipeline, instance=instance)[0][0])


def live_instances(conn: PgConnection, pipeline: str) -> int:
    """How many processes of ``pipeline`` are registered (hold their presence lock) now."""
    return int(fetch(conn, sql.COUNT_INSTANCES, pipeline=pipeline)[0][0])
