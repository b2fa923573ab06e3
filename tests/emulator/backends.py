"""Backends for the conformance cases: the emulator (PostgreSQL spelling) and a real SQL Server (T-SQL).

Each case states its SQL once per dialect (``pg=`` and ``tsql=``); the backend picks its own. The SQL Server
backend needs ``MSSQL2PG_TEST_MSSQL_URL`` (the ``mssql_url`` fixture skips otherwise) and a database where
``CREATE DATABASE`` and ``sys.sp_cdc_enable_db`` are allowed (sysadmin): each case gets a fresh CDC-enabled
database, dropped afterwards. ``capture()`` runs ``sys.sp_cdc_scan`` to capture synchronously, so the capture job
should not be running (SQL Server Agent stopped, or ``sys.sp_cdc_stop_job``).
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import pg8000.native

from mssql2pg.emulator import connect


class Backend(Protocol):
    name: str

    def run(self, *, pg: str, tsql: str, **params: Any) -> list[tuple[Any, ...]]: ...

    def capture(self) -> None: ...

    def close(self) -> None: ...


class EmulatorBackend:
    name = "emulator"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: pg8000.native.Connection = connect(url)

    def run(self, *, pg: str, tsql: str, **params: Any) -> list[tuple[Any, ...]]:
        del tsql
        rows = self.conn.run(pg, **params)
        return [tuple(r) for r in rows] if rows else []

    def capture(self) -> None:
        """Immediate mode: changes are already captured at commit."""

    def close(self) -> None:
        self.conn.close()


def _bracket(name: str) -> str:
    """A T-SQL delimited identifier."""
    return "[" + name.replace("]", "]]") + "]"


class MssqlBackend:
    """A fresh database per case on the configured SQL Server (CDC enabled), dropped afterwards."""

    name = "mssql"

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, text  # noqa: PLC0415 - only when a real SQL Server is configured
        from sqlalchemy.engine import make_url  # noqa: PLC0415

        server = make_url(url)
        self.admin = create_engine(server, isolation_level="AUTOCOMMIT")
        self.database = f"mssql2pg_conformance_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as admin:
            admin.execute(text(f"CREATE DATABASE {_bracket(self.database)}"))
        self.engine = create_engine(server.set(database=self.database), isolation_level="AUTOCOMMIT")
        self.conn = self.engine.connect()
        self.run(pg="", tsql="EXEC sys.sp_cdc_enable_db")

    def run(self, *, pg: str, tsql: str, **params: Any) -> list[tuple[Any, ...]]:
        del pg
        from sqlalchemy import text  # noqa: PLC0415

        result = self.conn.execute(text(tsql), params)
        return [tuple(r) for r in result] if result.returns_rows else []

    def capture(self) -> None:
        self.run(pg="", tsql="EXEC sys.sp_cdc_scan @maxtrans = 100000, @maxscans = 1, @continuous = 0")

    def close(self) -> None:
        from sqlalchemy import text  # noqa: PLC0415

        try:
            self.run(pg="", tsql="EXEC sys.sp_cdc_disable_db")
        finally:
            self.conn.close()
            self.engine.dispose()
            with self.admin.connect() as admin:
                db = _bracket(self.database)
                admin.execute(text(f"ALTER DATABASE {db} SET SINGLE_USER WITH ROLLBACK IMMEDIATE"))
                admin.execute(text(f"DROP DATABASE {db}"))
            self.admin.dispose()
