"""Dead-peer detection on both database connections: TCP keepalive plus ``TCP_USER_TIMEOUT`` (30 s).

Keepalive finds a peer that is gone while the connection is idle; ``TCP_USER_TIMEOUT`` bounds the wait when
data was sent and is never acknowledged (see "Known limits" in docs/reliability.md).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.pipeline.connections import TCP_USER_TIMEOUT_MS, driver_socket, source_engine, target_connector
from tests.e2e.pipeline_process import write_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux-only"),
]


def _assert_tuned(sock: object) -> None:
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == TCP_USER_TIMEOUT_MS == 30_000


def test_target_and_source_connections_have_keepalive_and_user_timeout(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.t"]))

    target = target_connector(config)()
    try:
        _assert_tuned(driver_socket(target))
    finally:
        target.close()

    engine = source_engine(config)
    try:
        with engine.connect() as conn:
            _assert_tuned(driver_socket(conn.connection.dbapi_connection))
    finally:
        engine.dispose()
