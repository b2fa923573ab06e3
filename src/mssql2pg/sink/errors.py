"""Errors that only the applier raises about a whole table."""

from __future__ import annotations

from collections.abc import Sequence

from mssql2pg.errors import TableFaultError
from mssql2pg.model import TableId


class UnknownCaptureInstanceError(TableFaultError):
    """A change of a replicated table arrived from a capture instance the applier was not built with.

    A second capture instance is how SQL Server follows a schema change (reference §4). Until the pipeline can
    switch instances while it runs (the schema-evolution work), applying that instance's rows under the old
    shape could lose the new columns' values, and stopping the process would stop every table. So the table
    pauses (state ``paused``, its changes stay in CDC while retention keeps them); the others go on.
    """

    table: TableId

    def __init__(self, table: TableId, capture_instance: str, known: Sequence[str]) -> None:
        applied = ", ".join(known) or "none"
        remediation = (
            f"finish the schema change at the source, then run `mssql2pg resync {table}`: it loads the table "
            "again from the newest capture instance (if that instance captures columns the target table lacks, "
            "add them to the target table or drop it so that resync creates it); switching capture instances "
            "while running is not supported yet"
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
