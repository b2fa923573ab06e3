"""The retention margin (issue 12): how long until CDC cleanup removes the oldest change a table still needs.

A paused table (a schema change waiting for review) holds its position while its changes wait in the source's
change tables; the cleanup job deletes changes older than its retention, counted back from the newest entry of
``cdc.lsn_time_mapping`` (SQL Server's low-water mark). So the oldest change the table still needs - the first
transaction after its position - is removed when the newest commit time is ``retention`` past its commit time:

    margin = retention - (newest commit time - commit time of the first transaction after the position)

Both times are the source's own (``lsn_time_mapping``), so no clock or time zone is involved. With nothing
committed after the position, nothing is needed yet: the margin is the whole retention. A negative margin means
cleanup may already have passed the position (the reader's LSN-gap check then says ``needs-resync``).

The retention is read from the source (``msdb.dbo.cdc_jobs`` on SQL Server, usually not readable by a
least-privilege login; the emulator's ``sys.sp_cdc_help_jobs()``), else ``schema_evolution.cdc_retention_fallback``.
``mssql2pg check`` prints the margin of every table; the running pipeline exports it as
``mssql2pg_retention_margin_seconds{table}`` (:class:`RetentionWatch`) for its tables and the paused ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
import structlog

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.model import TableId
from mssql2pg.observability import Observability
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.pipeline.periodic import Periodic
from mssql2pg.pipeline.plan import control_state
from mssql2pg.positions import Lsn
from mssql2pg.source import statements

log = structlog.get_logger(component="retention")

RETENTION_POLL_SECONDS = 60.0
"""How often a running pipeline measures the retention margins (they move by minutes, not seconds)."""


def cleanup_retention_seconds(conn: sa.Connection, fallback: float) -> float:
    """The cleanup job's retention in seconds, or ``fallback`` when the source does not tell this login."""
    mssql = conn.engine.dialect.name == "mssql"
    try:
        minutes = conn.execute(statements.cleanup_retention(mssql=mssql)).scalar()
    except sa.exc.DBAPIError as exc:  # no access to msdb (the usual least-privilege login)
        conn.rollback()
        log.debug("CDC cleanup retention not readable; using the configured fallback", error=str(exc).split("\n")[0])
        return fallback
    return fallback if minutes is None else float(minutes) * 60.0


def margin_seconds(conn: sa.Connection, position: Lsn, retention: float) -> float | None:
    """The retention margin of a table at ``position`` (None without a position: nothing is held yet)."""
    if position.is_null:
        return None
    max_lsn = Lsn.from_bytes(conn.execute(statements.MAX_LSN).scalar())
    if max_lsn.is_null or max_lsn <= position:
        return retention
    newest = conn.execute(statements.COMMIT_TIME, {"lsn": max_lsn.raw}).scalar()
    page = conn.execute(statements.commit_times_page(1), {"after_lsn": position.raw, "to_lsn": max_lsn.raw})
    first = page.mappings().first()  # the first transaction after the position: the oldest change still needed
    oldest_needed = None if first is None else first["tran_end_time"]
    if not isinstance(newest, datetime) or not isinstance(oldest_needed, datetime):
        return retention
    return retention - (newest - oldest_needed).total_seconds()


def measure_margins(config: Config, engine: sa.Engine, tables: Sequence[TableId]) -> dict[str, float]:
    """The margin of each of ``tables`` at its position (its own, or the group's checkpoint) and of every table
    paused with a held position."""
    known = control_state(config)
    conn = target_connector(config)()
    try:
        held = control.held_positions(conn, config.pipeline.name)
    finally:
        conn.close()
    positions = {str(t): known.positions.get(str(t), known.checkpoint) for t in tables}
    positions.update(held)
    margins: dict[str, float] = {}
    with engine.connect() as source:
        retention = cleanup_retention_seconds(source, config.schema_evolution.cdc_retention_fallback)
        for table, position in positions.items():
            margin = margin_seconds(source, position, retention)
            if margin is not None:
                margins[table] = margin
        source.rollback()
    return margins


@dataclass
class RetentionWatch(Periodic):
    """Exports ``mssql2pg_retention_margin_seconds`` at start and every :data:`RETENTION_POLL_SECONDS`."""

    config: Config
    engine: sa.Engine
    tables: Sequence[TableId]
    obs: Observability
    interval: float = field(default_factory=lambda: RETENTION_POLL_SECONDS)

    thread_name = "mssql2pg-retention"
    tick_at_start = True
    close_timeout = 10.0

    def period(self) -> float:
        return self.interval

    def tick(self) -> None:
        try:
            for table, margin in measure_margins(self.config, self.engine, self.tables).items():
                self.obs.metrics.set_retention_margin(table, margin)
        except Exception as exc:  # a database away: the runner reports that; measured again next time
            log.debug("retention margin not measured", error=str(exc).split("\n")[0])
