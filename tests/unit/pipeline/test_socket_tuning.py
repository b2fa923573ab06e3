"""Which socket gets keepalive and ``TCP_USER_TIMEOUT``, for each driver's connection object."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from mssql2pg.pipeline.connections import TCP_USER_TIMEOUT_MS, driver_socket, tune_socket


def test_the_socket_is_found_under_pg8000_and_python_tds_connections() -> None:
    raw = object()
    assert driver_socket(SimpleNamespace(_usock=raw)) is raw  # pg8000
    assert driver_socket(SimpleNamespace(_tds_socket=SimpleNamespace(sock=raw))) is raw  # python-tds, clear
    tls = SimpleNamespace(_transport=raw)
    assert driver_socket(SimpleNamespace(_tds_socket=SimpleNamespace(sock=tls))) is raw  # python-tds, TLS
    assert driver_socket(object()) is None


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux-only")
def test_tune_socket_sets_keepalive_and_user_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        tune_socket(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == TCP_USER_TIMEOUT_MS


def test_tune_socket_ignores_what_is_not_a_socket() -> None:
    tune_socket(None)
    tune_socket(object())
