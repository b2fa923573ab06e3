"""Real Prometheus and Alertmanager against a running pipeline (issue 5, part 5).

Throughput and lag must show up in Prometheus within 60 seconds of the pipeline starting, and stopping the
emulated source must bring the source-unreachable alert to Alertmanager (the test's rule copy shortens
``for:`` to 2 s; the rules are otherwise the shipped ``monitoring/prometheus/alerts.yml``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mssql2pg.demo.workload import TABLES, Workload, create_schema
from mssql2pg.emulator import connect, install
from mssql2pg.localpg import free_port
from tests.e2e.pipeline_process import PipelineProcess, write_config
from tests.fixtures.pg import PgServer
from tests.fixtures.prometheus import AlertmanagerServer, PrometheusServer, fast_rules
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_metrics_reach_prometheus_and_a_stopped_source_alerts(
    fresh_server: PgServer,
    target_url: str,
    tmp_path: Path,
    prometheus: Callable[..., PrometheusServer],
    alertmanager: Callable[[], AlertmanagerServer],
) -> None:
    source_url = fresh_server.url(fresh_server.create_database("mssql"))
    install(source_url)
    src = connect(source_url)
    create_schema(src)
    port = free_port()
    config = write_config(
        tmp_path / "p.yaml",
        source_url,
        target_url,
        list(TABLES),
        http={"host": "127.0.0.1", "port": port},
        retry={"initial": 0.2, "maximum": 1.0},
    )
    pipeline = PipelineProcess(config, tmp_path / "pipeline.log")
    pipeline.start()
    am = alertmanager()
    prom = prometheus(f"127.0.0.1:{port}", rules=[fast_rules(tmp_path)], alertmanager=am)
    try:
        Workload(src, seed=11).run(30)
        src.close()

        wait_for(
            lambda: (prom.value("sum(mssql2pg_rows_applied_total)") or 0) > 0,
            timeout=60,
            what="throughput (mssql2pg_rows_applied_total) in Prometheus",
        )
        wait_for(
            lambda: prom.query("mssql2pg_lag_seconds"), timeout=60, what="lag (mssql2pg_lag_seconds) in Prometheus"
        )
        lag = prom.value("max(mssql2pg_lag_seconds)")

        assert lag is not None
        assert 0 <= lag < 60
        assert "Mssql2pgSourceUnreachable" not in am.alert_names()

        fresh_server.stop("immediate")

        wait_for(
            lambda: prom.value('max(mssql2pg_component_up{component="source"})') == 0,
            timeout=60,
            what="the source reported down in Prometheus",
        )
        wait_for(
            lambda: "Mssql2pgSourceUnreachable" in am.alert_names(),
            timeout=90,
            what="the source-unreachable alert in Alertmanager",
        )
        assert pipeline.alive(), "the pipeline must keep retrying, not exit, while the source is down"
    finally:
        if pipeline.alive():
            pipeline.terminate()
    assert pipeline.proc is not None
    assert pipeline.proc.returncode == 0, pipeline.log_text()[-3000:]
