"""The HTTP server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from mssql2pg.errors import ConfigError
from mssql2pg.observability.health import Health
from mssql2pg.observability.http import ObservabilityServer
from mssql2pg.observability.metrics import Metrics


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def served() -> Iterator[tuple[ObservabilityServer, int]]:
    server = ObservabilityServer(Metrics(process=False), Health())
    port = server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        server.stop()


def test_metrics_endpoint_serves_the_registry(served: tuple[ObservabilityServer, int]) -> None:
    server, port = served
    server.metrics.rows_applied("dbo.orders", "insert", 42)
    code, ctype, body = get(port, "/metrics")
    assert code == 200
    assert ctype.startswith("text/plain")
    assert 'mssql2pg_rows_applied_total{operation="insert",table="dbo.orders"} 42.0' in body


def test_readyz_is_503_when_unhealthy_and_200_when_degraded(served: tuple[ObservabilityServer, int]) -> None:
    server, port = served
    code, ctype, body = get(port, "/readyz")
    assert (code, ctype) == (503, "application/json")
    assert json.loads(body)["status"] == "unhealthy"
    server.health.set_component("source", "healthy")
    server.health.set_component("target", "degraded", "retrying")
    code, _, body = get(port, "/readyz")
    assert code == 200
    assert json.loads(body)["components"]["target"] == {"status": "degraded", "reason": "retrying"}


def test_healthz_and_unknown_paths(served: tuple[ObservabilityServer, int]) -> None:
    server, port = served
    assert get(port, "/healthz")[0] == 200
    server.health.liveness_timeout = -1.0  # any beat is now too old
    assert get(port, "/healthz")[0] == 503
    assert get(port, "/nope")[0] == 404


def test_port_in_use_is_a_config_error_with_a_hint(served: tuple[ObservabilityServer, int]) -> None:
    _, port = served
    other = ObservabilityServer(Metrics(process=False), Health())
    with pytest.raises(ConfigError, match=r"http\.port"):
        other.start("127.0.0.1", port)
