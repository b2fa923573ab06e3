"""A pg8000-like connection that records every statement instead of running it, for applier unit tests.

It answers just enough for the applier to work: a free table lock, the control schema at the version this code
knows, no existing target table, a COPY that stores every line sent, a set-based apply that wrote what it was
sent, and a checkpoint that moves. Nothing else is interpreted; the tests read :attr:`FakePg.statements`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mssql2pg.control import CONTROL_VERSION
from mssql2pg.control import statements as control_sql
from mssql2pg.positions import Lsn


@dataclass
class Statement:
    sql: str
    params: dict[str, Any]
    lines: list[str] | None = None  # the COPY data, one string per line (without the newline)


@dataclass
class FakePg:
    """One connection: ``run`` records; ``row_count`` follows the last COPY; ``closed`` after ``close``."""

    statements: list[Statement] = field(default_factory=list)
    row_count: int = -1
    closed: bool = False
    fail: Callable[[str], BaseException | None] = lambda _sql: None  # an error to raise for a statement

    def run(self, sql: str, stream: Sequence[bytes] | None = None, **params: Any) -> list[list[Any]] | None:
        lines = None
        if stream is not None:
            lines = b"".join(stream).decode("utf-8").splitlines()
        self.statements.append(Statement(sql, params, lines))
        error = self.fail(sql)
        if error is not None:
            raise error
        text = sql.lstrip()
        if text.startswith("COPY"):
            self.row_count = len(lines or [])
            return None
        if "pg_try_advisory_lock" in text:
            return [[True]]
        if sql == control_sql.CONTROL_TABLE_EXISTS:  # an installed control schema: no migration to run
            return [[True]]
        if text.startswith("SELECT version FROM"):
            return [[CONTROL_VERSION]]
        if text.startswith("WITH last AS"):  # the set-based apply: (upserted, upserts, deleted, deletes)
            return [[0, 0, 0, 0]]
        return []

    def close(self) -> None:
        self.closed = True

    # --- reading what was sent --------------------------------------------------------------------------------

    def sql(self) -> list[str]:
        return [s.sql for s in self.statements]

    def copies(self) -> list[Statement]:
        return [s for s in self.statements if s.sql.startswith("COPY")]

    def index(self, predicate: Callable[[str], bool]) -> int:
        """Position of the first statement ``predicate`` accepts (ValueError when there is none)."""
        for i, statement in enumerate(self.statements):
            if predicate(statement.sql):
                return i
        msg = "no such statement"
        raise ValueError(msg)


@dataclass
class FakeCheckpoints:
    """A ``CheckpointStore`` that keeps the position in memory and records what the applier asked of it."""

    position: Lsn = Lsn.NULL
    claimed: list[list[str]] = field(default_factory=list)
    written: list[Lsn] = field(default_factory=list)
    group: str = ""

    def read(self, conn: Any) -> Lsn:
        return self.position

    def adopt(self, conn: Any, tables: Sequence[str]) -> dict[str, Lsn]:
        return {}

    def claim(self, conn: Any, tables: Sequence[str]) -> None:
        self.claimed.append(list(tables))

    def begin(self, conn: Any) -> None:
        pass

    def write(self, conn: Any, lsn: Lsn, commit_time: datetime | None) -> None:
        conn.run("-- checkpoint", lsn=lsn)
        self.written.append(lsn)
        self.position = lsn
