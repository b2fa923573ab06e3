"""Writes to the target by someone else, as users see them: ``mssql2pg run`` as a process counts the conflict on
``/metrics`` and logs it once (JSON), and ``mssql2pg status`` (text and ``--json``) shows it per table and kind,
read from the control schema by another process."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from mssql2pg.emulator import connect
from mssql2pg.localpg import free_port
from tests.e2e.pipeline_process import PipelineProcess, run_cli, write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.e2e

SERIES = 'mssql2pg_target_conflicts_total{kind="update_missing",table="dbo.t"}'


def scrape(port: int, series: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_run_counts_and_logs_a_conflict_and_status_shows_it(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "t")
    src.run("INSERT INTO dbo.t VALUES (1, 'a'), (2, 'b')")
    port = free_port()
    config = write_config(
        tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.t"], http={"host": "127.0.0.1", "port": port}
    )
    pipeline = PipelineProcess(config, tmp_path / "pipeline.log")
    pipeline.start()
    dst = connect(target_url)
    try:
        wait_for(lambda: scrape(port, SERIES) == 0, timeout=60, what="the conflict counter at 0 from the start")
        wait_for(lambda: dst.run("SELECT count(*) FROM dbo.t")[0][0] == 2, timeout=60, what="the rows replicated")
        dst.run("DELETE FROM dbo.t WHERE id = 1")  # behind the pipeline's back
        src.run("UPDATE dbo.t SET v = 'a2' WHERE id = 1")
        wait_for(lambda: scrape(port, SERIES) == 1, timeout=60, what="the conflict counted on /metrics")
        wait_for(lambda: dst.run("SELECT v FROM dbo.t WHERE id = 1") == [["a2"]], timeout=60, what="source wins")
    finally:
        assert pipeline.terminate() == 0
        src.close()
        dst.close()

    events = [json.loads(line) for line in pipeline.log_text().splitlines() if line.startswith("{")]
    conflicts = [e for e in events if e.get("event") == "target conflict: the target table was written by someone else"]
    assert [(e["level"], e["table"], e["kind"], e["key"]) for e in conflicts] == [
        ("warning", "dbo.t", "update_missing", {"id": 1})
    ]

    text = run_cli("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert "target written by others: update_missing: 1" in text.stdout
    report = run_cli("status", "--config", str(config), "--json")
    assert report.returncode == 0, report.stderr
    [table] = json.loads(report.stdout)["tables"]
    assert table["target_conflicts"] == {"update_missing": 1}
