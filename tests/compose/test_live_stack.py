"""The whole Compose stack, live: SQL Server 2022 with CDC → pipeline → PostgreSQL, plus monitoring and logs.

Needs a Docker engine with the compose plugin (and an amd64 host or Rosetta for SQL Server); skipped with the
reason otherwise. The stack runs as project `mssql2pg-test` on free loopback ports and is removed with its
volumes afterwards (set MSSQL2PG_COMPOSE_KEEP=1 to leave it running for a look).

    .venv/bin/pytest tests/compose/test_live_stack.py -m docker -v

The first run pulls about 3 GB of images and builds the pipeline image; later runs take a few minutes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.compose.live_stack import LiveStack, docker_unavailable_reason
from tests.compose.stack_files import REPO
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

REPLICATION_TIMEOUT = 120.0  # capture polls every 1 s, the pipeline reads continuously: seconds, not minutes


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    reason = docker_unavailable_reason()
    if reason:
        pytest.skip(reason)
    live = LiveStack()
    live.down()  # leftovers of an interrupted run
    try:
        live.up()
        wait_for(live.all_up, timeout=600, interval=5, what=f"every service up: {live.expected_states()}")
        yield live
    except BaseException:
        print(live.logs(tail=200))
        raise
    finally:
        if os.environ.get("MSSQL2PG_COMPOSE_KEEP") != "1":
            live.down()


def _unique_id() -> int:
    return random.randint(1_000_000, 2_000_000_000)  # the stack's volume may hold rows of earlier runs


def _target_rows(stack: LiveStack, sql: str, **params: Any) -> list[list[Any]]:
    conn = stack.warehouse()
    try:
        rows: list[list[Any]] = conn.run(sql, **params)
        return rows
    finally:
        conn.close()


def test_every_service_is_up_and_healthy(stack: LiveStack) -> None:
    states = stack.states()
    for name, ok in stack.expected_states().items():
        assert states.get(name) in ok, f"{name}: {states.get(name)} (expected {ok})"


def test_cdc_is_enabled_and_the_capture_job_runs(stack: LiveStack) -> None:
    out = stack.sqlcmd(
        "SET NOCOUNT ON; SELECT capture_instance FROM cdc.change_tables ORDER BY capture_instance;"
        " SELECT COUNT(*) FROM msdb.dbo.sysjobactivity a JOIN msdb.dbo.sysjobs j ON j.job_id = a.job_id"
        " WHERE j.name = N'cdc.shop_capture' AND a.start_execution_date IS NOT NULL"
        " AND a.stop_execution_date IS NULL AND a.session_id = (SELECT MAX(session_id) FROM msdb.dbo.syssessions);"
    )
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    assert lines == ["dbo_customers_v1", "dbo_order_lines_v1", "dbo_orders_v1", "1"]


def test_a_transaction_written_in_sql_server_reaches_postgresql(stack: LiveStack) -> None:
    customer, order = _unique_id(), _unique_id()
    stack.sqlcmd(
        "SET XACT_ABORT ON; BEGIN TRANSACTION;"
        f" INSERT INTO dbo.customers (id, name, email, balance) VALUES ({customer}, N'Zoë ''live''', NULL, 100.50);"
        f" INSERT INTO dbo.orders (id, customer_id, total, status) VALUES ({order}, {customer}, 42.25, N'new');"
        f" INSERT INTO dbo.order_lines (order_id, line_no, product, qty) VALUES ({order}, 1, N'widget', 3),"
        f" ({order}, 2, N'gadget', 1);"
        " COMMIT;"
    )
    wait_for(
        lambda: _target_rows(stack, "SELECT 1 FROM dbo.order_lines WHERE order_id = :o", o=order) == [[1], [1]],
        timeout=REPLICATION_TIMEOUT,
        what=f"order {order} and its two lines in PostgreSQL",
    )
    assert _target_rows(stack, "SELECT name, email, balance FROM dbo.customers WHERE id = :c", c=customer) == [
        ["Zoë 'live'", None, Decimal("100.50")]
    ]
    assert _target_rows(stack, "SELECT customer_id, total, status FROM dbo.orders WHERE id = :o", o=order) == [
        [customer, Decimal("42.25"), "new"]
    ]
    lines = _target_rows(
        stack, "SELECT line_no, product, qty FROM dbo.order_lines WHERE order_id = :o ORDER BY line_no", o=order
    )
    assert lines == [[1, "widget", 3], [2, "gadget", 1]]


def test_an_update_in_sql_server_reaches_postgresql(stack: LiveStack) -> None:
    customer = _unique_id()
    stack.sqlcmd(f"INSERT INTO dbo.customers (id, name, balance) VALUES ({customer}, N'before', 1.00);")
    stack.sqlcmd(f"UPDATE dbo.customers SET name = N'after', balance = 2.00 WHERE id = {customer};")
    wait_for(
        lambda: (
            _target_rows(stack, "SELECT name, balance FROM dbo.customers WHERE id = :c", c=customer)
            == [["after", Decimal("2.00")]]
        ),
        timeout=REPLICATION_TIMEOUT,
        what=f"customer {customer} updated in PostgreSQL",
    )


def test_prometheus_scrapes_the_pipeline(stack: LiveStack) -> None:
    def pipeline_up() -> bool:
        result = stack.get_json("prometheus", "/api/v1/query", query='up{job="mssql2pg"}')["data"]["result"]
        return [r["value"][1] for r in result] == ["1"]

    wait_for(pipeline_up, timeout=60, interval=2, what='up{job="mssql2pg"} == 1 in Prometheus')
    names = stack.get_json("prometheus", "/api/v1/label/__name__/values")["data"]
    assert any(name.startswith("mssql2pg_") for name in names), "no mssql2pg_* metric scraped"


def test_prometheus_loads_the_alert_rules_and_finds_alertmanager(stack: LiveStack) -> None:
    groups = stack.get_json("prometheus", "/api/v1/rules")["data"]["groups"]
    assert groups, "no alert rules loaded from monitoring/prometheus/alerts.yml"

    def alertmanager_known() -> bool:
        active = stack.get_json("prometheus", "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        return any("alertmanager:9093" in am["url"] for am in active)

    wait_for(alertmanager_known, timeout=60, interval=2, what="Prometheus lists alertmanager:9093 as active")


def test_the_pipeline_logs_reach_victorialogs(stack: LiveStack) -> None:
    def pipeline_lines() -> list[str]:
        text = stack.post_form(
            "victorialogs", "/select/logsql/query", query='_time:1h container_name:~"pipeline"', limit="5"
        )
        return [line for line in text.splitlines() if line.strip()]

    lines = wait_for(pipeline_lines, timeout=60, interval=2, what="pipeline log lines in VictoriaLogs")
    assert lines


def test_perses_serves_the_provisioned_dashboards(stack: LiveStack) -> None:
    expected = _dashboard_names(REPO / "monitoring" / "perses" / "dashboards")
    assert expected, "no dashboard of project mssql2pg in monitoring/perses/dashboards"

    def served() -> set[str]:
        dashboards = stack.get_json("perses", "/api/v1/projects/mssql2pg/dashboards")
        return {d["metadata"]["name"] for d in dashboards}

    wait_for(lambda: expected <= served(), timeout=120, interval=3, what=f"Perses serves dashboards {expected}")


def _dashboard_names(folder: Path) -> set[str]:
    import yaml  # noqa: PLC0415

    names: set[str] = set()
    for path in folder.rglob("*"):
        if path.suffix in {".json", ".yaml", ".yml"}:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            for resource in doc if isinstance(doc, list) else [doc]:
                if resource.get("kind") == "Dashboard" and resource["metadata"].get("project") == "mssql2pg":
                    names.add(resource["metadata"]["name"])
    return names


def test_the_pipeline_catches_up_after_postgresql_is_stopped_and_started(stack: LiveStack) -> None:
    """Acceptance scenario: `docker compose stop postgres`, changes keep coming, postgres returns, no loss."""
    customer = _unique_id()
    stack.compose("stop", "postgres", timeout=120)
    try:
        stack.sqlcmd(f"INSERT INTO dbo.customers (id, name, balance) VALUES ({customer}, N'during outage', 7.00);")
    finally:
        stack.compose("start", "postgres", timeout=120)
    wait_for(
        lambda: _target_rows(stack, "SELECT name FROM dbo.customers WHERE id = :c", c=customer) == [["during outage"]],
        timeout=REPLICATION_TIMEOUT + 120,  # the pipeline's reconnect backoff tops out at 60 s
        interval=2,
        what=f"customer {customer}, written while PostgreSQL was down, in PostgreSQL",
    )
    wait_for(stack.all_up, timeout=180, interval=5, what="every service healthy again")
