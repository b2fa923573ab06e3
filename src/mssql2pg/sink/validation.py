"""Validation at the write boundary (FR-014): what the target wrote must be what it was sent.

Two checks, both cheap on the fast path:

* a COPY into staging must report exactly as many rows as were sent;
* after a set-based apply that wrote fewer rows than it staged (repeated keys, deletes, or a lost write),
  :func:`statements.count_unwritten` checks change by change that the target now holds it.

A failed check raises :class:`WriteMismatchError`, a *row* fault: the applier isolates the rows it concerns and
dead-letters them. A write is never silently dropped.
"""

from __future__ import annotations

from mssql2pg.errors import TerminalError
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.sink import statements as sql
from mssql2pg.sink.schema import TargetTable


class WriteMismatchError(TerminalError):
    """The target did not write what it was sent."""


def check_copied(conn: PgConnection, table: TargetTable, sent: int) -> None:
    """After a COPY: pg8000's ``row_count`` must equal the number of lines sent."""
    copied = conn.row_count
    if copied != sent:
        msg = f"{table.source}: COPY into staging reported {copied} rows, {sent} were sent"
        raise WriteMismatchError(msg, hint="the rows are kept in mssql2pg.dead_letters; see 'mssql2pg dlq list'")


def check_written(conn: PgConnection, table: TargetTable, index: int) -> None:
    """After an apply: every last-per-key change in staging ``index`` is reflected in the target table."""
    missing = int(fetch(conn, sql.count_unwritten(table, index))[0][0])
    if missing:
        msg = (
            f"{table.source}: the target did not write {missing} change(s) it was sent "
            "(a trigger, rule or row-level security policy on the target table swallowed the write)"
        )
        raise WriteMismatchError(
            msg, hint="remove what discards writes on the target table, then 'mssql2pg dlq retry ID'"
        )
