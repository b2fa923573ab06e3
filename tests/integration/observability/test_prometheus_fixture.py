"""The real Prometheus and Alertmanager, scraping our own HTTP server: the fixture works end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mssql2pg.observability.health import Health
from mssql2pg.observability.http import ObservabilityServer
from mssql2pg.observability.metrics import Metrics
from tests.fixtures.prometheus import AlertmanagerServer, PrometheusServer, fast_rules
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline_http() -> Iterator[ObservabilityServer]:
    server = ObservabilityServer(Metrics(), Health())
    server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_our_metrics_and_alerts_reach_alertmanager(
    pipeline_http: ObservabilityServer,
    prometheus: Callable[..., PrometheusServer],
    alertmanager: Callable[[], AlertmanagerServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    metrics = pipeline_http.metrics
    metrics.set_up("source", True)
    metrics.set_up("target", True)
    am = alertmanager()
    rules = fast_rules(tmp_path_factory.mktemp("rules"))
    prom = prometheus(f"127.0.0.1:{pipeline_http.port}", rules=[rules], alertmanager=am)
    wait_for(prom.targets_up, timeout=60, what="Prometheus scraping the pipeline")

    metrics.rows_applied("dbo.orders", "insert", 25)
    metrics.set_last_applied("dbo.orders", datetime.now(UTC) - timedelta(seconds=30))
    wait_for(
        lambda: prom.value('sum(mssql2pg_rows_applied_total{table="dbo.orders"})') == 25,
        timeout=60,
        what="rows applied visible in Prometheus",
    )
    lag = wait_for(lambda: prom.value('mssql2pg_lag_seconds{table="dbo.orders"}'), timeout=60, what="lag")
    assert lag is not None
    assert lag >= 30
    assert prom.value("mssql2pg_process_resident_memory_bytes") is not None
    assert "Mssql2pgSourceUnreachable" not in am.alert_names()

    metrics.set_up("source", False)
    wait_for(
        lambda: "Mssql2pgSourceUnreachable" in am.alert_names(),
        timeout=60,
        what="the source alert in Alertmanager",
    )
    (alert,) = [a for a in am.alerts() if a["labels"]["alertname"] == "Mssql2pgSourceUnreachable"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook"].endswith("#mssql2pgsourceunreachable")
