"""``mssql2pg reconcile`` as users and cron run it: the JSON contract and the exit status (issue 13)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.pipeline_process import cli_env, run_cli, write_config
from tests.fixtures.pg import free_port
from tests.integration.reconcile.conftest import Replicated, replicated_pair

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(emulated_source_url: str, target_url: str, tmp_path: Path) -> Iterator[Replicated]:
    replicated = replicated_pair(emulated_source_url, target_url, tmp_path, rows=50)
    yield replicated
    replicated.src.close()
    replicated.dst.close()


def _reconcile(pair: Replicated, *args: str) -> tuple[int, dict[str, object]]:
    result = run_cli("reconcile", "--config", str(pair.config_path), "--format", "json", "--settle", "5", *args)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {"stderr": result.stderr}


def test_consistent_exits_0_then_drift_exits_1_with_the_keys(pair: Replicated) -> None:
    code, doc = _reconcile(pair)
    assert code == 0, doc
    assert doc["consistent"] is True
    assert {t["table"]: t["status"] for t in doc["tables"]} == {"dbo.typed": "consistent", "dbo.by_uuid": "consistent"}

    pair.dst.run("DELETE FROM dbo.typed WHERE id IN (4, 5, 6)")
    pair.dst.run("UPDATE dbo.typed SET c_text = 'x' WHERE id = 7")

    code, doc = _reconcile(pair, "dbo.typed", "--max-keys", "2")

    assert code == 1, doc
    (table,) = doc["tables"]
    assert table["status"] == "inconsistent"
    assert (table["source_rows"], table["target_rows"]) == (50, 47)
    assert table["missing_keys"] == [{"id": 4}, {"id": 5}]
    assert table["missing_total"] == 3
    assert table["different_keys"] == [{"id": 7}]
    assert table["suggested_action"]


def test_the_metrics_file_says_when_and_how_much_differs(pair: Replicated, tmp_path: Path) -> None:
    pair.dst.run("DELETE FROM dbo.by_uuid WHERE v IN (1, 2)")
    metrics = tmp_path / "reconcile.prom"

    code, _doc = _reconcile(pair, "--metrics-file", str(metrics))

    assert code == 1
    text = metrics.read_text(encoding="utf-8")
    assert 'mssql2pg_reconcile_differing_rows{kind="missing",table="dbo.by_uuid"} 2.0' in text
    assert 'mssql2pg_reconcile_differing_rows{kind="missing",table="dbo.typed"} 0.0' in text
    assert 'mssql2pg_reconcile_last_run_timestamp_seconds{table="dbo.typed"}' in text
    assert "process_" not in text


def test_a_table_that_cannot_be_compared_exits_2(pair: Replicated) -> None:
    pair.dst.run("DROP TABLE dbo.by_uuid")

    code, doc = _reconcile(pair)

    assert code == 2, doc
    status = {t["table"]: t for t in doc["tables"]}
    assert status["dbo.by_uuid"]["status"] == "error"
    assert "by_uuid" in status["dbo.by_uuid"]["error"]
    assert status["dbo.typed"]["status"] == "consistent"


def test_the_human_table_names_each_table_and_what_to_do(pair: Replicated) -> None:
    pair.dst.run("DELETE FROM dbo.by_uuid WHERE v = 1")

    result = run_cli("reconcile", "--config", str(pair.config_path), "--settle", "5")

    assert result.returncode == 1, result.stderr
    assert "dbo.by_uuid" in result.stdout
    assert "inconsistent" in result.stdout
    assert "do: run `mssql2pg reconcile --repair dbo.by_uuid`" in result.stdout


def test_repair_fixes_the_keys_and_exits_0(pair: Replicated) -> None:
    pair.dst.run("DELETE FROM dbo.typed WHERE id = 10")
    pair.dst.run("UPDATE dbo.typed SET c_uuid = NULL WHERE id = 11")

    code, doc = _reconcile(pair, "dbo.typed", "--repair")

    assert code == 0, doc
    (table,) = doc["tables"]
    assert table["status"] == "consistent"
    assert table["repaired"] == 2
    assert table["repaired_keys"] == [{"id": 10}, {"id": 11}]
    assert _reconcile(pair, "dbo.typed")[0] == 0


def test_a_target_that_is_down_ends_reconcile_with_one_line_naming_it(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """The source answers (its tables are discovered), the target does not: exit 2, one line naming the target,
    no table reported as if it had been compared."""
    pair = replicated_pair(emulated_source_url, target_url, tmp_path, rows=5)
    pair.src.close()
    pair.dst.close()
    port = free_port()
    down = f"postgresql://dw:pw@127.0.0.1:{port}/dw"
    config = write_config(tmp_path / "down.yaml", emulated_source_url, down, ["dbo.typed"])

    result = run_cli("reconcile", "--config", str(config), "--format", "json", timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "the target database" in lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    assert ":pw@" not in result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_on_a_terminal_a_progress_line_names_each_table_and_is_cleared(pair: Replicated) -> None:
    """stderr on a pseudo-terminal: the progress line is shown (table, i/n, phase), then cleared; stdout (a pipe)
    gets the report only."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mssql2pg", "reconcile", "--config", str(pair.config_path), "--settle", "5"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
        env=cli_env(),
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = proc.communicate(timeout=120)
    os.close(controller)

    assert proc.returncode == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "dbo.typed (1/2): segment checksums" in text or "dbo.typed (2/2): segment checksums" in text
    assert "dbo.by_uuid (" in text
    starts = [i for i in range(len(text)) if text.startswith('{"component"', i)]
    assert starts  # the JSON log lines of this configuration
    assert all(text[:i].endswith(("\r\x1b[K", "\n")) for i in starts), text  # not glued to the progress text
    assert text.rstrip("\r\n").endswith("\x1b[K")  # cleared before the report
    assert "segment checksums" not in stdout
    assert "consistent" in stdout
