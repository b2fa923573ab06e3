"""Emulator-specific behaviour: install, capture timing (immediate/agent), commit order under concurrency,
value round-trips and the CLI. Facts cite /work/shared/reference/sqlserver-cdc.md."""

from __future__ import annotations

import subprocess
import sys
import threading
from decimal import Decimal

import pg8000.exceptions
import pytest
from click.testing import CliRunner

from mssql2pg.cli.emulator import command as emulator
from mssql2pg.emulator import agent, connect, install, scan, set_capture_mode
from tests.fixtures.emulator import enable_table
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def test_install_twice_is_a_no_op(emulated_source_url: str) -> None:
    """Install is idempotent: a second run keeps enabled tables and captured changes."""
    conn = connect(emulated_source_url)
    try:
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        enable_table(conn, "dbo", "t")
        conn.run("INSERT INTO dbo.t VALUES (1)")
        install(emulated_source_url)
        conn.run("INSERT INTO dbo.t VALUES (2)")
        assert conn.run('SELECT count(*) FROM cdc."dbo_t_CT"') == [[2]]
        assert conn.run("SELECT is_cdc_enabled FROM sys.databases WHERE name = current_database()") == [[True]]
    finally:
        conn.close()


def test_max_lsn_is_null_before_any_capture(emulated_source_url: str) -> None:
    """§2.1: fn_cdc_get_max_lsn() is NULL before capture has produced anything."""
    conn = connect(emulated_source_url)
    try:
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[None]]
    finally:
        conn.close()


def test_agent_mode_changes_wait_for_a_scan(emulated_source_url: str) -> None:
    """§2.7 / §9.9: with the capture job not running, nothing is captured and max LSN stays NULL; a scan
    publishes the committed transactions in commit order, one lsn_time_mapping row each."""
    conn = connect(emulated_source_url)
    try:
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        enable_table(conn, "dbo", "t")
        set_capture_mode(emulated_source_url, "agent")
        conn.run("INSERT INTO dbo.t VALUES (1)")
        conn.run("INSERT INTO dbo.t VALUES (2)")
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[None]]
        assert conn.run('SELECT count(*) FROM cdc."dbo_t_CT"') == [[0]]

        assert scan(emulated_source_url) == 2

        rows = conn.run('SELECT "__$start_lsn", id FROM cdc."dbo_t_CT" ORDER BY 1')
        assert [r[1] for r in rows] == [1, 2]
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[rows[1][0]]]
        assert conn.run("SELECT count(*) FROM cdc.lsn_time_mapping") == [[2]]
    finally:
        conn.close()


def test_agent_loop_captures_until_stopped(emulated_source_url: str) -> None:
    """§2.7: the agent scans every polling interval; once stopped, max LSN stops moving."""
    conn = connect(emulated_source_url)
    try:
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        enable_table(conn, "dbo", "t")
        set_capture_mode(emulated_source_url, "agent")
        stop = threading.Event()
        worker = threading.Thread(target=agent.run, args=(emulated_source_url, 0.05, stop))
        worker.start()
        try:
            conn.run("INSERT INTO dbo.t VALUES (1)")
            wait_for(
                lambda: conn.run('SELECT count(*) FROM cdc."dbo_t_CT"') == [[1]],
                timeout=10,
                what="the agent to capture the insert",
            )
        finally:
            stop.set()
            worker.join(timeout=10)
        before = conn.run("SELECT sys.fn_cdc_get_max_lsn()")
        conn.run("INSERT INTO dbo.t VALUES (2)")
        assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == before
    finally:
        conn.close()


def test_concurrent_writers_never_expose_an_lsn_ahead_of_a_pending_lower_one(emulated_source_url: str) -> None:
    """§3.2/§3.3 + brief item 3: commit order = LSN order and an LSN is visible only with all rows of its
    transaction. Writers commit interleaved transactions while a reader repeatedly reads max LSN and then all
    change rows up to it; every later read must only add rows ABOVE the previous max (nothing appears below)."""
    setup = connect(emulated_source_url)
    setup.run(
        "CREATE SCHEMA dbo; CREATE TABLE dbo.a (id int PRIMARY KEY, w int); "
        "CREATE TABLE dbo.b (id int PRIMARY KEY, w int)"
    )
    enable_table(setup, "dbo", "a")
    enable_table(setup, "dbo", "b")
    setup.close()
    writers, per_writer = 4, 40
    errors: list[BaseException] = []
    done = threading.Event()

    def write(w: int) -> None:
        c = connect(emulated_source_url)
        try:
            for i in range(per_writer):
                key = w * 1000 + i
                c.run("BEGIN")
                c.run("INSERT INTO dbo.a VALUES (:k, :w)", k=key, w=w)
                c.run("INSERT INTO dbo.b VALUES (:k, :w)", k=key, w=w)
                c.run("COMMIT")
        except BaseException as exc:
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    reader = connect(emulated_source_url)
    seen: dict[bytes, int] = {}
    last_max = b""
    violations: list[str] = []
    try:
        while True:
            finished = not any(t.is_alive() for t in threads)
            ((mx,),) = reader.run("SELECT sys.fn_cdc_get_max_lsn()")
            if mx is not None:
                rows = reader.run(
                    'SELECT "__$start_lsn", count(*) FROM (SELECT "__$start_lsn" FROM cdc."dbo_a_CT" UNION ALL '
                    'SELECT "__$start_lsn" FROM cdc."dbo_b_CT") u WHERE "__$start_lsn" <= :mx GROUP BY 1',
                    mx=mx,
                )
                for lsn, count in rows:
                    if lsn not in seen and lsn <= last_max:
                        violations.append(f"LSN {lsn.hex()} appeared below an already-read max {last_max.hex()}")
                    if count != 2:
                        violations.append(f"LSN {lsn.hex()} visible with {count} of 2 rows")
                    seen[lsn] = count
                last_max = mx
            if finished:
                break
        done.set()
    finally:
        reader.close()
        for t in threads:
            t.join()
    assert not errors
    assert violations == []
    assert len(seen) == writers * per_writer


def test_values_round_trip_through_pg8000(emulated_source_url: str) -> None:
    """Values in the change table equal the source values as pg8000 returns them (docs/emulator.md types)."""
    conn = connect(emulated_source_url)
    try:
        conn.run(
            "CREATE SCHEMA dbo; CREATE TABLE dbo.v (id int PRIMARY KEY, m sys.money, t sys.tinyint, "
            "o sys.datetimeoffset, u uuid, b bytea, n numeric(12,3), x varchar(5))"
        )
        enable_table(conn, "dbo", "v")
        conn.run(
            "INSERT INTO dbo.v VALUES (1, 12.3456, 255, '2024-01-02 03:04:05.1234567 +05:30', "
            "'6f9619ff-8b86-d011-b42d-00c04fc964ff', '\\x00ff', 1.5, 'é')"
        )
        src = conn.run("SELECT m, t, o, u, b, n, x FROM dbo.v")
        ct = conn.run('SELECT m, t, o, u, b, n, x FROM cdc."dbo_v_CT"')
        assert ct == src
        assert src[0][0] == Decimal("12.3456")
        assert src[0][2] == "2024-01-02 03:04:05.1234567 +05:30"
    finally:
        conn.close()


@pytest.mark.parametrize("args", [[], ["install"], ["agent"]])
def test_cli_help(args: list[str]) -> None:
    """`mssql2pg emulator [install|agent] --help` works through the real entry point."""
    result = subprocess.run(
        [sys.executable, "-m", "mssql2pg", "emulator", *args, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_cli_install(source_server) -> None:  # type: ignore[no-untyped-def]
    """`mssql2pg emulator install --url postgresql://…` installs into that database."""
    url = source_server.url(source_server.create_database("cli"))
    result = CliRunner().invoke(emulator, ["install", "--url", url])
    assert result.exit_code == 0, result.output
    conn = connect(url)
    try:
        conn.run("CALL sys.sp_cdc_enable_db()")
        assert conn.run("SELECT is_cdc_enabled FROM sys.databases WHERE name = current_database()") == [[True]]
    finally:
        conn.close()


def test_enable_table_helper_accepts_a_url(emulated_source_url: str) -> None:
    """The fixture helper works with a URL too and returns the capture instance name."""
    conn = connect(emulated_source_url)
    try:
        conn.run("CREATE SCHEMA sales; CREATE TABLE sales.items (id int PRIMARY KEY)")
        assert enable_table(emulated_source_url, "sales", "items", capture_instance="items_v1") == "items_v1"
        assert conn.run("SELECT capture_instance FROM cdc.change_tables") == [["items_v1"]]
    finally:
        conn.close()


def test_enable_table_before_enable_db_raises_22901(source_server) -> None:  # type: ignore[no-untyped-def]
    """§2.6: without sp_cdc_enable_db, CDC procedures raise 22901 (database not enabled for CDC)."""
    url = source_server.url(source_server.create_database("noenable"))
    install(url)
    conn = connect(url)
    try:
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        with pytest.raises(pg8000.exceptions.DatabaseError, match="22901"):
            enable_table(conn, "dbo", "t")
        assert conn.run("SELECT is_cdc_enabled FROM sys.databases WHERE name = current_database()") == [[False]]
    finally:
        conn.close()


def test_interleaved_transactions_give_non_monotonic_seqvals(emulated_source_url: str) -> None:
    """§3.2: seqval increases within a transaction but not across commits when transactions interleave;
    ordering by (commit LSN, seqval) is still a total order."""
    a, b = connect(emulated_source_url), connect(emulated_source_url)
    try:
        a.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        enable_table(a, "dbo", "t")
        a.run("BEGIN")
        a.run("INSERT INTO dbo.t VALUES (1)")
        b.run("INSERT INTO dbo.t VALUES (2)")
        a.run("COMMIT")
        rows = a.run('SELECT id, "__$start_lsn", "__$seqval" FROM cdc."dbo_t_CT" ORDER BY "__$start_lsn"')
        assert [r[0] for r in rows] == [2, 1]
        assert rows[0][2] > rows[1][2]
        assert all(r[2] < r[1] for r in rows)
    finally:
        a.close()
        b.close()
