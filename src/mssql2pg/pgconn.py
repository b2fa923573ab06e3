"""The PostgreSQL connection as the sink uses it: a typed Protocol over ``pg8000.native.Connection``.

Why a Protocol and not pg8000's class: pg8000 ships no type information, so its connection is ``Any`` to mypy
and every call on it goes unchecked. The Protocol names the three members the sink uses (``run`` with
``:name`` parameters or a COPY ``stream``, ``row_count``, ``close``), so mypy checks the calls, and tests can
pass a small fake without pretending to be pg8000. ``tests/unit/test_pgconn.py`` and
``tests/integration/sink/test_pgconn.py`` check that pg8000's connection satisfies it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import IO, Any, Protocol, runtime_checkable

CopyStream = Iterable[bytes] | IO[Any]
"""COPY ... FROM STDIN reads pieces of bytes (or a readable file); COPY ... TO STDOUT writes to a file."""


@runtime_checkable
class PgConnection(Protocol):
    """What the sink uses of ``pg8000.native.Connection``."""

    def run(self, sql: str, stream: CopyStream | None = None, **params: Any) -> list[list[Any]] | None:
        """Run one statement (``:name`` placeholders bound from ``params``); its rows, or ``None`` when it
        returns no result set (DDL, COPY, DML without RETURNING)."""
        ...

    @property
    def row_count(self) -> int:
        """Rows the last :meth:`run` affected or copied; -1 when the server does not say (pg8000 gives
        ``None`` before the first :meth:`run`)."""
        ...

    def close(self) -> None:
        """Close the connection (a transaction still open is rolled back by the server)."""
        ...


PgConnector = Callable[[], PgConnection]
"""Opens a new connection each time it is called (the applier reconnects with it after a failure)."""


def fetch(conn: PgConnection, sql: str, **params: Any) -> list[list[Any]]:
    """The rows of a statement that returns a result set (possibly none); a :class:`TypeError` for a statement
    that returns no result set at all, which is a programming error, not an empty answer."""
    rows = conn.run(sql, **params)
    if rows is None:
        msg = f"the statement returns no result set to fetch: {sql[:80]}"
        raise TypeError(msg)
    return rows


__all__ = ["CopyStream", "PgConnection", "PgConnector", "fetch"]
