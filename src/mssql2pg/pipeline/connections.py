"""Connections to the two databases: the source's SQLAlchemy engine and the target's pg8000 connector.

The one place that turns the configured URLs into connections, so that every connection (pipeline, resync,
check, status, dlq) gets the same socket tuning and timeouts.

Dead peers are found by TCP keepalive rather than a socket timeout: a timeout would also cut a long but healthy
statement (the set-based apply of a million-row transaction).
"""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

import pg8000.exceptions
import pg8000.native
import sqlalchemy as sa

from mssql2pg.classify import server_refuses_tls, sqlstate
from mssql2pg.config import Config
from mssql2pg.pgconn import PgConnection, PgConnector
from mssql2pg.pipeline.tls import source_tls_args, target_tls
from mssql2pg.sink.statements import WRITER_SETTING

KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
# Data sent but not acknowledged for this long (ms) closes the connection: bounds the case keepalive cannot
# see (a peer that stops acknowledging while we have queued data). An idle wait for a long statement sends
# nothing, so it is not cut. Linux only; elsewhere the option is skipped.
TCP_USER_TIMEOUT_MS = 30_000

# PostgreSQL type OID of ``timestamp``. pg8000 parses it with ``strptime``, which was a quarter of the reader's
# time on the emulator; ``fromisoformat`` reads PostgreSQL's output format directly and is many times faster.
PG_TIMESTAMP_OID = 1114


def tune_socket(sock: object) -> None:
    """Keepalive and ``TCP_USER_TIMEOUT`` on a database connection's socket (each option where the OS has it)."""
    if not isinstance(sock, socket.socket):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (*KEEPALIVE.items(), ("TCP_USER_TIMEOUT", TCP_USER_TIMEOUT_MS)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def driver_socket(dbapi_connection: object) -> object:
    """The TCP socket under a driver connection: pg8000 keeps it in ``_usock``; python-tds in
    ``_tds_socket.sock`` (wrapped by its TLS layer as ``_transport`` when encrypted). ``None`` if not found."""
    sock = getattr(dbapi_connection, "_usock", None)
    if sock is None:
        sock = getattr(getattr(dbapi_connection, "_tds_socket", None), "sock", None)
        sock = getattr(sock, "_transport", sock)
    return sock


def _fast_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def source_connect_args(config: Config) -> dict[str, Any]:
    """The driver's ``connect()`` arguments for the source: timeouts and application name, plus TLS for SQL
    Server (:func:`mssql2pg.pipeline.tls.source_tls_args`)."""
    args = config.source.engine_connect_args()
    if config.source.backend == "mssql":
        args.update(source_tls_args(config.source))
    return args


def source_engine(config: Config) -> sa.Engine:
    """The source's engine (SQL Server, or the emulator in PostgreSQL); connecting happens on first use."""
    engine = sa.create_engine(
        config.source.sqlalchemy_url(),
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=2,
        connect_args=source_connect_args(config),
    )

    @sa.event.listens_for(engine, "connect")
    def _tune_socket(dbapi_connection: Any, _record: Any) -> None:
        tune_socket(driver_socket(dbapi_connection))

    if config.source.backend == "postgresql":

        @sa.event.listens_for(engine, "connect")
        def _register_adapters(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.register_in_adapter(PG_TIMESTAMP_OID, _fast_timestamp)

    return engine


def target_connector(config: Config) -> PgConnector:
    """A function that opens a new pg8000 native connection to the target each time it is called.

    The applier talks to pg8000's native API directly (COPY streaming, one connection it owns), so it takes a
    factory rather than an SQLAlchemy engine. ``connect_timeout`` bounds the connect only: once connected the
    socket blocks without a timeout (keepalive finds a dead peer).

    With ``target.protect``, every session carries the setting ``mssql2pg.writer`` (a startup parameter: no
    extra round trip) that the guard checks (:data:`mssql2pg.sink.statements.WRITER_SETTING`). Only then: a
    pooler that refuses unknown startup parameters (PgBouncer) keeps working for pipelines without the guard.

    TLS is set up here for every target connection (:mod:`mssql2pg.pipeline.tls`: libpq's ``sslmode``); for
    ``allow`` and ``prefer`` a connection the server refuses is tried once more the other way."""
    params = config.target.pg8000_params()
    if config.target.protect:  # every mssql2pg session on the target says so: the guard lets only these write
        params = {**params, "startup_params": {WRITER_SETTING: "on"}}
    tls = target_tls(config.target)

    def open_connection() -> pg8000.native.Connection:
        try:
            return pg8000.native.Connection(**params, ssl_context=tls.first)
        except pg8000.exceptions.Error as exc:
            if tls.fallback is None or not _refused_for_tls(exc, first_was_tls=tls.first is not False):
                raise
        return pg8000.native.Connection(**params, ssl_context=tls.fallback)

    def connect() -> PgConnection:
        conn: PgConnection = open_connection()
        sock = driver_socket(conn)
        if isinstance(sock, socket.socket):
            sock.settimeout(None)
            tune_socket(sock)
        return conn

    return connect


def _refused_for_tls(exc: BaseException, *, first_was_tls: bool) -> bool:
    """The server refused the first attempt for its encryption: it answered the TLS request with "no" (we
    asked for TLS), or pg_hba.conf has no entry for a plain connection (SQLSTATE 28000, we did not)."""
    return server_refuses_tls(exc) if first_was_tls else sqlstate(exc) == "28000"
