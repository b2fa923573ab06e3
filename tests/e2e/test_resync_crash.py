"""kill -9 of ``mssql2pg resync`` while it loads: nothing of it is visible, the table is left paused with a
remediation that says to run it again, and running it again makes the target equal to the source."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import cli_env, run_cli, write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.target import table_state, writing_for
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 300_000


def test_kill9_during_resync_changes_nothing_and_a_rerun_completes(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    assert run_cli("run", "--config", str(config), "--until-caught-up").returncode == 0
    src.run(f"INSERT INTO dbo.a SELECT g, repeat('x', 40) || g FROM generate_series(2, {ROWS}) AS g")
    dst = connect(target_url)
    dst.run("UPDATE dbo.a SET v = 'drifted' WHERE id = 1")
    before = dst.run("SELECT id, v, _cdc_lsn FROM dbo.a ORDER BY id")

    resync = subprocess.Popen(
        [sys.executable, "-m", "mssql2pg", "resync", "--config", str(config), "dbo.a"],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: writing_for(target_url, 300), what="resync loading rows", timeout=120)
    finally:
        os.kill(resync.pid, signal.SIGKILL)
        resync.wait(timeout=30)

    assert dst.run("SELECT id, v, _cdc_lsn FROM dbo.a ORDER BY id") == before  # nothing of it committed
    state, _reason, remediation = table_state(dst, "dbo.a")
    assert state == "paused"
    assert "mssql2pg resync dbo.a" in remediation

    done = run_cli("resync", "--config", str(config), "dbo.a")
    assert done.returncode == 0, done.stdout + done.stderr
    src.run("INSERT INTO dbo.a VALUES (0, 'after')")
    assert run_cli("run", "--config", str(config), "--until-caught-up").returncode == 0

    assert dst.run("SELECT count(*), sum(id) FROM dbo.a") == src.run("SELECT count(*), sum(id) FROM dbo.a")
    assert dst.run("SELECT v FROM dbo.a WHERE id IN (0, 1) ORDER BY id") == [["after"], ["a1"]]
    assert dst.run("SELECT state, resume_after FROM mssql2pg.table_state WHERE source_table = 'dbo.a'") == [
        ["active", None]
    ]
    src.close()
    dst.close()
