"""A freshly started pipeline's /metrics has a 0 sample for every known label set: rows applied by table and
operation, errors by table and kind, dead letters by status (and the other per-table counters), so every
dashboard panel and alert expression has a series from the first scrape instead of "no data"."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

TABLES = ("dbo.a", "dbo.b")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def running(emulated_source_url: str, target_url: str, tmp_path: Path) -> Iterator[int]:
    """A pipeline replicating two empty CDC tables, its HTTP server on a free port; yields the port."""
    src = connect(emulated_source_url)
    try:
        src.run("CREATE SCHEMA dbo")
        for name in ("a", "b"):
            src.run(f"CREATE TABLE dbo.{name} (id int PRIMARY KEY, v text)")
            enable_table(src, "dbo", name)
    finally:
        src.close()
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, list(TABLES)))
    pipeline = Pipeline.from_config(config)
    port = pipeline.obs.serve("127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=pipeline.run, args=(stop,), name="pipeline-under-test", daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(30)
        pipeline.obs.close()
    assert not thread.is_alive()


def test_a_fresh_pipeline_exports_zero_for_every_known_label_set(running: int) -> None:
    wait_for(
        lambda: all(
            _scrape(running).get(("mssql2pg_table_state", (("state", "active"), ("table", t)))) == 1 for t in TABLES
        ),
        what="both tables active in /metrics",
    )
    samples = _scrape(running)

    expected: list[tuple[str, dict[str, str]]] = []
    for table in TABLES:
        expected += [
            ("mssql2pg_rows_applied_total", {"table": table, "operation": op}) for op in ("insert", "update", "delete")
        ]
        expected += [
            ("mssql2pg_errors_total", {"table": table, "kind": kind})
            for kind in ("transient", "terminal", "data", "schema")
        ]
        expected += [("mssql2pg_dead_letters_routed_total", {"table": table})]
        expected += [("mssql2pg_stale_events_total", {"table": table})]
        expected += [
            ("mssql2pg_schema_changes", {"table": table, "status": s})
            for s in ("auto-applied", "pending-review", "failed", "approved")
        ]
    expected += [("mssql2pg_errors_total", {"table": "", "kind": "transient"})]
    expected += [("mssql2pg_dead_letters", {"status": s}) for s in ("pending", "resolved", "ignored")]
    expected += [("mssql2pg_retries_total", {"component": c}) for c in ("source", "target", "pipeline")]
    expected += [("mssql2pg_transactions_applied_total", {})]

    missing = [(n, labels) for n, labels in expected if (n, tuple(sorted(labels.items()))) not in samples]
    assert missing == [], f"series absent from the first scrape: {missing}"
    nonzero = {(n, str(labels)): samples[(n, tuple(sorted(labels.items())))] for n, labels in expected}
    assert {k: v for k, v in nonzero.items() if v != 0} == {}
