"""Errors that only the applier raises about a whole table."""

from __future__ import annotations

from collections.abc import Sequence

from mssql2pg.errors import TableFaultError
from mssql2pg.model import TableId


class UnknownCaptureInstanceError(TableFaultError):
    """A change of a replicated table arrived from a capture instance the applier was not built with.

    A second capture instance is how SQL Server follows a schema change (reference §4). The pipeline's reader
    notices a new instance before it reads any of its rows and the pipeline re-plans with it (see
    :class:`~mssql2pg.source.errors.CaptureInstancesChangedError`); a row that still arrives from an instance
    the plan lacks (a reader built without the plan) pauses its table rather than being applied under the old
    shape (state ``paused``, its changes stay in CDC while retention keeps them); the others go on.
    """

    table: TableId

    def __init__(self, table: TableId, capture_instance: str, known: Sequence[str]) -> None:
        applied = ", ".join(known) or "none"
        remediation = (
            f"finish the schema change at the source, then run `mssql2pg resync {table}`: it loads the table "
            "again from the newest capture instance (if that instance captures columns the target table lacks, "
            "add them to the target table or drop it so that resync creates it)"
        )
        super().__init__(
            f"{table}: changes arrived from capture instance {capture_instance}, which this pipeline was not built "
            f"with (it applies {applied}); a new capture instance follows a schema change at the source",
            table=table,
            state="paused",
            remediation=remediation,
            hint=remediation,
        )
        self.capture_instance = capture_instance
        self.known = tuple(known)


class UnmappableTableError(TableFaultError):
    """A selected table has no target table that can hold it exactly: two columns that become one target column
    (names differing only in case under ``naming: lower``), a name longer than PostgreSQL's 63 bytes, a column
    that collides with a metadata column.

    These are facts about one table's names, found before anything is written. Exiting would stop every table
    for one table's names (issue 15 point 2), so the table pauses (state ``paused``) with the reason and what
    to change, and the others replicate; once the configuration maps it, ``mssql2pg resync`` loads it.
    """

    table: TableId

    def __init__(self, table: TableId, problem: str, change: str) -> None:
        remediation = f"{change}; then `mssql2pg resync {table}`"
        super().__init__(
            f"{table}: cannot be mapped to a target table: {problem}",
            table=table,
            state="paused",
            remediation=remediation,
            hint=remediation,
        )
        self.problem = problem


class SchemaChangeReviewError(TableFaultError):
    """A source schema change the target cannot follow on its own (a type change that is not a safe widening):
    the table pauses with its position held, its changes wait in CDC, and the other tables go on. The
    remediation names the recorded change (``mssql2pg.schema_changes``) and the command that resumes it."""

    table: TableId

    def __init__(self, table: TableId, change_ids: Sequence[int], problems: Sequence[str]) -> None:
        ids = ", ".join(str(i) for i in change_ids)
        remediation = (
            f"migrate the target column(s) (see `mssql2pg schema list` for the recommended DDL of change {ids}), "
            f"then `mssql2pg schema approve {change_ids[0]}`; or `mssql2pg resync {table}`"
        )
        super().__init__(
            f"{table}: schema change {ids} waits for review: " + "; ".join(problems),
            table=table,
            state="paused",
            remediation=remediation,
            hint=remediation,
        )
        self.change_ids = tuple(change_ids)
