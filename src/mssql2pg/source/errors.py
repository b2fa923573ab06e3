"""Errors that only the source reader raises."""

from __future__ import annotations

from mssql2pg.errors import ReplanError, TableFaultError
from mssql2pg.model import TableId
from mssql2pg.positions import Lsn


class LsnGapError(TableFaultError):
    """CDC cleanup removed changes of one table that were not replicated yet.

    Table-level and terminal: reading on would silently skip changes, and retrying cannot bring them back. The
    table must be snapshotted again (``mssql2pg resync``); other tables are not affected, which is why the error
    carries the table so the caller can pause just that one (state ``needs-resync``).
    """

    table: TableId

    def __init__(self, table: TableId, capture_instance: str, checkpoint: Lsn, min_lsn: Lsn) -> None:
        hint = (
            f"run `mssql2pg resync {table}` to snapshot the table again; if cleanup caused it, raise the CDC "
            "retention (EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = <minutes>)"
        )
        super().__init__(
            f"changes of {table} after {checkpoint} are no longer available: capture instance {capture_instance} "
            f"now starts at {min_lsn} (CDC cleanup ran ahead of replication, or the instance is newer than the "
            "checkpoint)",
            table=table,
            state="needs-resync",
            remediation=f"mssql2pg resync {table} ({hint})",
            hint=hint,
        )
        self.capture_instance = capture_instance
        self.checkpoint = checkpoint
        self.min_lsn = min_lsn


class TableShapeError(TableFaultError):
    """A change table's rows do not match its capture instance's metadata (read-side validation, FR-014).

    The captured columns in ``cdc.captured_columns`` are what every row is decoded and applied by; rows of
    another width, a captured column the change table does not deliver, or a capture instance without a usable
    key would be written wrongly or not at all. The table pauses (state ``paused``); the others go on.
    """

    table: TableId

    def __init__(self, table: TableId, capture_instance: str, problem: str) -> None:
        remediation = (
            f"re-create the capture instance (EXEC sys.sp_cdc_disable_table, then sys.sp_cdc_enable_table for "
            f"{table}), then `mssql2pg resync {table}`"
        )
        super().__init__(
            f"{table}: capture instance {capture_instance} does not match its change table: {problem}",
            table=table,
            state="paused",
            remediation=remediation,
            hint=remediation,
        )
        self.capture_instance = capture_instance
        self.problem = problem


class CaptureInstancesChangedError(ReplanError):
    """The capture instances of a replicated table are no longer those the running plan was built with (a second
    instance appeared, one was disabled, or a captured column changed its type): not a failure. The reader
    raises it at a window boundary, before it reads anything of that window, so everything before is complete;
    the pipeline rebuilds itself with the instances as they are now (see
    :meth:`mssql2pg.pipeline.assembly.Pipeline.run`) and reads on from its checkpoint."""

    def __init__(self, table: TableId, was: tuple[str, ...], now: tuple[str, ...]) -> None:
        super().__init__(
            f"the capture instances of {table} changed: [{', '.join(was)}] -> [{', '.join(now)}]",
            hint="nothing to do: the pipeline follows the change (see docs/schema-evolution.md)",
        )
        self.table = table
        self.was = was
        self.now = now


class TableGoneError(TableFaultError):
    """A replicated table has no capture instance any more: CDC was disabled on it, or the table was dropped or
    renamed at the source (SQL Server drops a table's capture instances with it; a renamed table's instances
    follow the new name). The table pauses (its target rows stay as they are); the others go on."""

    table: TableId

    def __init__(self, table: TableId) -> None:
        from_source = (
            f"EXEC sys.sp_cdc_enable_table @source_schema = N'{table.schema}', @source_name = N'{table.name}', "
            "@role_name = NULL"
        )
        remediation = (
            f"if CDC was disabled by mistake, enable it again ({from_source}) and run `mssql2pg resync {table}`; "
            "if the table was renamed, name the new one in `tables:` of the configuration (and resync it); if it "
            "was dropped on purpose, remove it from the configuration"
        )
        super().__init__(
            f"{table}: no capture instance any more (CDC was disabled on it, or the table was dropped or renamed "
            "at the source)",
            table=table,
            state="paused",
            remediation=remediation,
            hint=remediation,
        )
