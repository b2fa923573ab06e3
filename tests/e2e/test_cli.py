"""The command line as users run it: help, demo, check, run with bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg.demo.workload import TABLES, create_schema
from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import run_cli, write_config

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["emulator", "--help"],
        ["emulator", "install", "--help"],
        ["emulator", "agent", "--help"],
        ["run", "--help"],
        ["check", "--help"],
        ["status", "--help"],
        ["dlq", "--help"],
        ["dlq", "list", "--help"],
        ["dlq", "retry", "--help"],
        ["resync", "--help"],
        ["schema", "list", "--help"],
        ["schema", "approve", "--help"],
        ["reconcile", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_works(args: list[str]) -> None:
    result = run_cli(*args)

    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_help_loads_no_driver_nor_the_pipeline() -> None:
    """`mssql2pg --help` stays fast: the commands import their work only when they run."""
    probe = (
        "import sys\n"
        "from mssql2pg.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('sqlalchemy', 'pg8000', 'pytds', 'pydantic', 'mssql2pg.config', 'mssql2pg.pipeline')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_demo_replicates_and_says_target_matches_source() -> None:
    result = run_cli("demo", "--transactions", "150", "--seed", "7", timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "target matches source exactly" in result.stdout
    assert "identical" in result.stdout
    assert "DIFFERENT" not in result.stdout


def test_run_with_unknown_key_names_it_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "source: {url: 'postgresql://u@127.0.0.1:1/x'}\ntarget: {url: 'postgresql://u@127.0.0.1:1/y'}\n"
        "tables: [dbo.t]\nreader: {poll_intervall: 1}\n",
        encoding="utf-8",
    )

    result = run_cli("run", "--config", str(config))

    assert result.returncode == 2
    assert "poll_intervall" in result.stderr
    assert "poll_interval" in result.stderr


def test_check_passes_on_a_ready_source_and_reports_a_missing_capture_job(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    create_schema(src)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, list(TABLES))

    ok = run_cli("check", "--config", str(config))

    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "capture job has produced LSNs" in ok.stdout
    assert "all checks passed" in ok.stdout

    src.run("CALL cdc_emulator.set_capture_mode('agent')")
    src.run("DELETE FROM cdc.lsn_time_mapping")  # as before the capture job ever ran: max LSN is NULL
    src.close()
    failing = run_cli("check", "--config", str(config))

    assert failing.returncode == 1
    assert "FAIL" in failing.stdout
    assert "sp_cdc_start_job" in failing.stdout


def test_check_names_a_table_without_cdc_with_the_command_to_fix_it(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src: pg8000.native.Connection = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.plain (id int PRIMARY KEY)")
    src.run("CREATE TABLE dbo.tracked (id int PRIMARY KEY)")
    src.run("CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'tracked', role_name => NULL)")
    src.close()
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.plain"])

    result = run_cli("check", "--config", str(config))

    assert result.returncode == 1
    assert "dbo.plain" in result.stdout


def test_status_shows_checkpoint_tables_and_caught_up(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    create_schema(src)
    src.close()
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, list(TABLES))

    before = run_cli("status", "--config", str(config))

    assert before.returncode == 0, before.stderr
    assert "none yet" in before.stdout

    assert run_cli("run", "--config", str(config), "--until-caught-up").returncode == 0
    after = run_cli("status", "--config", str(config), "--json")

    assert after.returncode == 0, after.stderr
    report = json.loads(after.stdout)
    assert report["caught_up"] is True
    assert {t["source"] for t in report["tables"]} == set(TABLES)
    assert all(t["state"] == "active" for t in report["tables"])
    assert report["checkpoint"]["lsn"] == report["source_max_lsn"]["lsn"]


def test_a_dlq_command_that_did_not_succeed_for_an_id_exits_1(target_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.yaml", target_url, target_url, ["dbo.t"])

    result = run_cli("dlq", "ignore", "--config", str(config), "7")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "7: not ignored" in result.stdout
