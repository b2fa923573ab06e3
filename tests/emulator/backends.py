"""Backends for the conformance cases: the emulator (PostgreSQL spelling) and a real SQL Server (T-SQL).

Each case states its SQL once per dialect (``pg=`` and ``tsql=``); the backend picks its own. The SQL Server
backend needs ``MSSQL2PG_TEST_MSSQL_URL`` (the ``mssql_url`` fixture skips otherwise) and a database where
``sys.sp_cdc_enable_db`` is allowed; it runs ``sys.sp_cdc_scan`` after each write to capture synchronously.
"""

from __future__ import annotations

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


class MssqlBackend:
    name = "mssql"

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine  # noqa: PLC0415 - only when a real SQL Server is configured

        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self.conn = self.engine.connect()

    def run(self, *, pg: str, tsql: str, **params: Any) -> list[tuple[Any, ...]]:
        del pg
        from sqlalchemy import text  # noqa: PLC0415

        result = self.conn.execute(text(tsql), params)
        return [tuple(r) for r in result] if result.returns_rows else []

    def capture(self) -> None:
        self.run(pg="", tsql="EXEC sys.sp_cdc_scan @maxtrans = 100000, @maxscans = 1, @continuous = 0")

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()
