"""A running ``mssql2pg run`` whose every table is inactive for a while (a resync loads its only table, or every
table is paused) stays up: it says why on ``/readyz``, watches the control schema, and takes the tables back
when they are active again. Exiting would leave nobody to take them back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import PipelineProcess, cli_env, run_cli, write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.pg import free_port
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _readyz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as unready:
        body = json.loads(unready.read())
    return body


def _rows(conn: Any, table: str) -> list[list[Any]]:
    return conn.run(f"SELECT id, v FROM {table} ORDER BY id")  # type: ignore[no-any-return]


@pytest.mark.parametrize("group", [None, "g1"], ids=["one-table", "group-of-one-table"])
def test_resync_of_the_only_table_leaves_the_running_pipeline_up_and_it_takes_the_table_back(
    emulated_source_url: str, target_url: str, tmp_path: Path, group: str | None
) -> None:
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    tables: list[Any] = ["dbo.a"] if group is None else [{"name": "dbo.a", "group": "g1"}, {"name": "dbo.b"}]
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, tables)
    port = free_port()
    env = {"MSSQL2PG__HTTP__PORT": str(port)} | ({"MSSQL2PG__PIPELINE__GROUP": group} if group else {})
    proc = PipelineProcess(config, tmp_path / "run.log", env=env)
    proc.start()
    dst = connect(target_url)
    try:
        wait_for(lambda: _rows(dst, "dbo.a") == _rows(src, "dbo.a"), what="dbo.a replicated", timeout=60)

        done = run_cli("resync", "--config", str(config), "dbo.a", env=cli_env(**env))
        assert done.returncode == 0, done.stdout + done.stderr

        src.run("INSERT INTO dbo.a VALUES (2, 'after the resync')")
        src.run("UPDATE dbo.a SET v = 'changed' WHERE id = 1")
        wait_for(
            lambda: _rows(dst, "dbo.a") == _rows(src, "dbo.a"),
            what=f"dbo.a streaming again after the resync; log:\n{proc.log_text()[-3000:]}",
            timeout=90,
        )
        assert proc.alive(), proc.log_text()[-3000:]
        assert "no table left to replicate" not in proc.log_text()
        wait_for(lambda: _readyz(port)["status"] == "healthy", what="/readyz healthy again", timeout=30)
    finally:
        rc = proc.terminate() if proc.alive() else proc.proc.returncode  # type: ignore[union-attr]
        dst.close()
        src.close()
    assert rc == 0, proc.log_text()[-3000:]


def test_a_run_started_with_every_table_paused_stays_up_degraded_and_resumes_after_a_resync(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a"])
    assert run_cli("run", "--config", str(config), "--until-caught-up").returncode == 0
    dst = connect(target_url)
    dst.run(
        "UPDATE mssql2pg.table_state SET state = 'paused', reason = 'paused by the test' WHERE source_table = 'dbo.a'"
    )
    port = free_port()
    proc = PipelineProcess(config, tmp_path / "run.log", env={"MSSQL2PG__HTTP__PORT": str(port)})
    proc.start()
    try:
        # components start "not checked yet" (unhealthy) until the process has reached both databases: wait for
        # the settled answer, degraded because of the paused table
        ready = wait_for(
            lambda: (
                (body := _readyz(port))["tables"].get("dbo.a", {}).get("reason")
                and body["status"] == "degraded"
                and body
            ),
            what=f"/readyz degraded, naming the paused table; log:\n{proc.log_text()[-3000:]}",
            timeout=60,
        )
        assert ready["status"] == "degraded"
        assert "paused by the test" in ready["tables"]["dbo.a"]["reason"]
        assert proc.alive(), proc.log_text()[-3000:]

        src.run("INSERT INTO dbo.a VALUES (2, 'while paused')")
        done = run_cli("resync", "--config", str(config), "dbo.a")
        assert done.returncode == 0, done.stdout + done.stderr
        src.run("INSERT INTO dbo.a VALUES (3, 'after the resync')")
        wait_for(
            lambda: _rows(dst, "dbo.a") == _rows(src, "dbo.a"),
            what=f"dbo.a streaming after the resync; log:\n{proc.log_text()[-3000:]}",
            timeout=90,
        )
        assert proc.alive()
    finally:
        rc = proc.terminate() if proc.alive() else proc.proc.returncode  # type: ignore[union-attr]
        dst.close()
        src.close()
    assert rc == 0, proc.log_text()[-3000:]
