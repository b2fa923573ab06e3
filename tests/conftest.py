"""Shared fixtures: two private PostgreSQL servers per session (the emulated SQL Server source and the
target), fresh databases per test, a TCP proxy, and ``wait_for``.

The servers are real and separate so that an outage of one is real. They run the system's PostgreSQL, or the
one the ``localpg`` extra installs from PyPI (mssql2pg.localpg); without either the session fails with an
install hint instead of skipping everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fixtures.optional_tools import require_libxml
from tests.fixtures.pg import PgServer, server_bindir
from tests.fixtures.proxy import TcpProxy

# Each area keeps its fixtures in its own module under tests/fixtures/.
pytest_plugins = ["tests.fixtures.emulator", "tests.fixtures.target", "tests.fixtures.prometheus", "tests.fixtures.tls"]


def pytest_sessionstart(session: pytest.Session) -> None:
    try:
        server_bindir()  # the system's PostgreSQL, else the wheel's (staged for the server user when root)
    except Exception as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("libxml") is not None:
        require_libxml(server_bindir())


def _server(name: str) -> Iterator[PgServer]:
    server = PgServer(name)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def source_server() -> Iterator[PgServer]:
    """The PostgreSQL server that hosts the SQL Server CDC emulator."""
    yield from _server("source")


@pytest.fixture(scope="session")
def target_server() -> Iterator[PgServer]:
    """The PostgreSQL server that plays the data warehouse."""
    yield from _server("target")


@pytest.fixture
def fresh_server() -> Iterator[PgServer]:
    """A server of the test's own, for tests that stop, crash or restart it."""
    yield from _server("fresh")


@pytest.fixture
def source_dbname(source_server: PgServer) -> str:
    return source_server.create_database("src")


@pytest.fixture
def target_dbname(target_server: PgServer) -> str:
    return target_server.create_database("dw")


@pytest.fixture
def source_url(source_server: PgServer, source_dbname: str) -> str:
    return source_server.url(source_dbname)


@pytest.fixture
def target_url(target_server: PgServer, target_dbname: str) -> str:
    return target_server.url(target_dbname)


@pytest.fixture
def tcp_proxy() -> Iterator[callable]:  # type: ignore[valid-type]
    """Factory: ``tcp_proxy(server)`` starts a proxy in front of a server; all are stopped afterwards."""
    proxies: list[TcpProxy] = []

    def make(server: PgServer) -> TcpProxy:
        proxy = TcpProxy("127.0.0.1", server.port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for p in proxies:
        p.stop()


@pytest.fixture
def mssql_url() -> str:
    """A real SQL Server for conformance cases; skipped (with the reason) when none is configured."""
    url = os.environ.get("MSSQL2PG_TEST_MSSQL_URL")
    if not url:
        pytest.skip("MSSQL2PG_TEST_MSSQL_URL not set: no real SQL Server to run this case against")
    return url
