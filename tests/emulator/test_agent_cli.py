"""Point 7 and install: the agent command as a real subprocess, sp_cdc_scan, and `emulator install` run twice.

Facts cite /work/shared/reference/sqlserver-cdc.md §2.1 (max LSN NULL before capture ran) and §2.7 (the capture
job; a stopped SQL Server Agent means nothing new is captured)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from mssql2pg.emulator import connect, install, set_capture_mode
from tests.fixtures.emulator import enable_table
from tests.fixtures.pg import PgServer
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mssql2pg", "emulator", *args]


def test_sp_cdc_scan_publishes_pending_changes_in_agent_mode(emulated_source_url: str) -> None:
    """§2.7: in agent mode a commit is not visible (max LSN NULL, empty change table) until CALL sys.sp_cdc_scan()."""
    conn = connect(emulated_source_url)
    try:
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        enable_table(conn, "dbo", "t")
        set_capture_mode(emulated_source_url, "agent")
        conn.run("INSERT INTO dbo.t VALUES (1)")
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[None]]
        conn.run("CALL sys.sp_cdc_scan()")
        rows = conn.run('SELECT "__$start_lsn", id FROM cdc."dbo_t_CT"')
        assert [r[1] for r in rows] == [1]
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[rows[0][0]]]
    finally:
        conn.close()


def test_agent_command_captures_while_running_and_stops_like_a_stopped_agent(emulated_source_url: str) -> None:
    """§2.7/§2.1: `mssql2pg emulator agent --url … --polling-interval 1s` switches to agent mode and captures in a
    loop; before its first scan max LSN is NULL; after SIGTERM it exits cleanly and max LSN stops moving."""
    conn = connect(emulated_source_url)
    try:
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        enable_table(conn, "dbo", "t")
        set_capture_mode(emulated_source_url, "agent")  # the agent would set it too; this makes the test ordered
        conn.run("INSERT INTO dbo.t VALUES (1)")
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[None]]
        proc = subprocess.Popen(
            _cli("agent", "--url", emulated_source_url, "--polling-interval", "1s"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(
                lambda: conn.run('SELECT count(*) FROM cdc."dbo_t_CT"') == [[1]],
                timeout=30,
                what="the agent subprocess to capture the first insert",
            )
            conn.run("INSERT INTO dbo.t VALUES (2)")
            wait_for(
                lambda: conn.run('SELECT count(*) FROM cdc."dbo_t_CT"') == [[2]],
                timeout=30,
                what="the agent subprocess to capture the second insert on a later polling cycle",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "capture agent stopped after publishing 2 transactions" in out
        ((stopped_at,),) = conn.run("SELECT sys.fn_cdc_get_max_lsn()")
        assert stopped_at is not None
        conn.run("INSERT INTO dbo.t VALUES (3)")
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[stopped_at]]
        assert conn.run('SELECT count(*) FROM cdc."dbo_t_CT"') == [[2]]
        assert conn.run("SELECT value FROM cdc_emulator.settings WHERE key = 'capture_mode'") == [["agent"]]
    finally:
        conn.close()


def _catalog_shape(url: str) -> list[list[object]]:
    conn = connect(url)
    try:
        rows: list[list[object]] = conn.run(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('cdc', 'sys', 'cdc_emulator') "
            "UNION ALL SELECT n.nspname, p.proname, p.prokind FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('cdc', 'sys', 'cdc_emulator') "
            "ORDER BY 1, 2, 3"
        )
        return rows
    finally:
        conn.close()


def test_install_command_on_an_empty_database_twice(source_server: PgServer) -> None:
    """`mssql2pg emulator install` works on an empty database and is idempotent: a second run succeeds and leaves
    the same catalog objects and settings (capture mode, enabled flag, job settings)."""
    url = source_server.url(source_server.create_database("twice"))
    first = subprocess.run(_cli("install", "--url", url), capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    shape = _catalog_shape(url)
    names = {(r[0], r[1]) for r in shape}
    for table in ("change_tables", "captured_columns", "index_columns", "ddl_history", "lsn_time_mapping"):
        assert ("cdc", table) in names
    conn = connect(url)
    try:
        conn.run("CALL sys.sp_cdc_enable_db()")
        conn.run("CALL sys.sp_cdc_change_job(job_type => 'cleanup', retention => 60)")
    finally:
        conn.close()
    second = subprocess.run(_cli("install", "--url", url), capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    install(url)  # and the library call, a third time
    assert _catalog_shape(url) == shape
    conn = connect(url)
    try:
        assert conn.run("SELECT is_cdc_enabled FROM sys.databases WHERE name = current_database()") == [[True]]
        assert conn.run("SELECT retention FROM sys.sp_cdc_help_jobs() WHERE job_type = 'cleanup'") == [[60]]
    finally:
        conn.close()
