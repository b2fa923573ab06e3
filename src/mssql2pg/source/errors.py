"""Errors that only the source reader raises."""

from __future__ import annotations

from mssql2pg.errors import TerminalError
from mssql2pg.model import TableId
from mssql2pg.positions import Lsn


class LsnGapError(TerminalError):
    """CDC cleanup removed changes of one table that were not replicated yet.

    Table-level and terminal: reading on would silently skip changes, and retrying cannot bring them back. The
    table must be snapshotted again (``mssql2pg resync``); other tables are not affected, which is why the error
    carries the table so the caller can pause just that one.
    """

    def __init__(self, table: TableId, capture_instance: str, checkpoint: Lsn, min_lsn: Lsn) -> None:
        self.table = table
        self.capture_instance = capture_instance
        self.checkpoint = checkpoint
        self.min_lsn = min_lsn
        super().__init__(
            f"changes of {table} after {checkpoint} are no longer available: capture instance {capture_instance} "
            f"now starts at {min_lsn} (CDC cleanup ran ahead of replication, or the instance is newer than the "
            "checkpoint)",
            hint=f"run `mssql2pg resync {table}` to snapshot the table again; if cleanup caused it, raise the CDC "
            "retention (EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = <minutes>)",
        )
