"""The HTTP endpoint under hostile clients (issue 15 point 8): a client that connects and never sends its
request does not block ``/healthz`` for others, is disconnected after the request timeout, and the number of
connections served at once is bounded (one over the bound is answered 503 at once, not queued behind the
others). Real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mssql2pg.observability import http
from mssql2pg.observability.health import Health
from mssql2pg.observability.http import ObservabilityServer
from mssql2pg.observability.metrics import Metrics
from tests.fixtures.waiting import wait_for
from tests.unit.observability.test_http import get


def _idle(port: int) -> socket.socket:
    """A client that connects and sends nothing (slowloris' first step)."""
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _closed_by_server(sock: socket.socket) -> bool:
    return sock.recv(1024) == b""  # blocks until the server closes it (the socket's own timeout bounds it)


@pytest.fixture
def limited() -> Iterator[tuple[ObservabilityServer, int]]:
    # long enough that the idle clients are still connected when the test asks, short enough to wait out
    server = ObservabilityServer(Metrics(process=False), Health(), request_timeout=3.0, max_connections=3)
    port = server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        server.stop()


def test_a_client_that_never_sends_its_request_does_not_block_healthz(limited: tuple[ObservabilityServer, int]) -> None:
    _server, port = limited
    idle = _idle(port)
    try:
        code, _ctype, body = get(port, "/healthz")
        assert code == 200, body
    finally:
        idle.close()


def test_an_idle_client_is_disconnected_after_the_request_timeout(limited: tuple[ObservabilityServer, int]) -> None:
    _server, port = limited
    idle = _idle(port)
    try:
        assert _closed_by_server(idle)
    finally:
        idle.close()


def test_connections_over_the_bound_get_503_at_once_and_capacity_returns(
    limited: tuple[ObservabilityServer, int],
) -> None:
    server, port = limited
    idle = [_idle(port) for _ in range(3)]
    try:
        wait_for(lambda: server.active_connections == 3, what="three idle connections being served", timeout=10)
        code, _ctype, body = get(port, "/healthz")
        assert code == 503
        assert "busy" in body
        for sock in idle:  # the request timeout frees the slots ...
            assert _closed_by_server(sock)
        wait_for(lambda: server.active_connections == 0, what="slots freed", timeout=10)
        assert get(port, "/healthz")[0] == 200  # ... and the endpoint serves again
    finally:
        for sock in idle:
            sock.close()


def test_the_defaults_bound_the_server() -> None:
    server = ObservabilityServer(Metrics(process=False), Health())
    assert (server.request_timeout, server.max_connections) == (http.REQUEST_TIMEOUT, http.MAX_CONNECTIONS)
    assert 0 < http.REQUEST_TIMEOUT <= 30
    assert 0 < http.MAX_CONNECTIONS <= 64


def test_a_client_trickling_its_request_is_disconnected_at_the_request_deadline(
    limited: tuple[ObservabilityServer, int],
) -> None:
    """Slowloris proper: a byte every second keeps a per-read timeout happy for ever; the request timeout bounds
    the whole request head, so the slot comes back."""
    server, port = limited
    trickle = _idle(port)
    sent = 0
    try:
        trickle.settimeout(1.0)
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 60:  # never finishes within 60 s
            try:
                trickle.sendall(bytes([byte]))
                if trickle.recv(1024) == b"":  # closed by the server: recv returns at once
                    break
            except TimeoutError:  # still open: the recv waited out its second, the pace of the trickle
                sent += 1
                continue
            except OSError:  # reset by the server
                break
        assert sent < 10, f"the server kept a trickling client for {sent} s (request timeout 3 s)"
        wait_for(lambda: server.active_connections == 0, what="the trickling client's slot freed", timeout=10)
    finally:
        trickle.close()
