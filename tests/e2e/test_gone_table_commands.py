"""A table still named under ``tables:`` whose capture instance is gone (table dropped, renamed, or CDC disabled
at the source) pauses in ``run`` while the others go on (``tests/integration/pipeline/test_table_gone.py``). The
other commands must treat it the same way, as a user drives them: ``resync``, ``reconcile``, ``check``,
``schema approve`` and ``dlq retry`` of the other tables work; the gone table is named, with what to do, instead
of one configuration error ending the command for every table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables

pytestmark = pytest.mark.integration


@pytest.fixture
def gone_config(emulated_source_url: str, target_url: str, tmp_path: Path) -> Path:
    """dbo.a, dbo.b and dbo.c replicated once, then dbo.c dropped at the source (still under ``tables:``)."""
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c VALUES (1, 'c1')")
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b", "dbo.c"])
    done = run_cli("run", "--config", str(config), "--until-caught-up")
    assert done.returncode == 0, done.stderr
    src.run("CALL sys.sp_cdc_disable_table(source_schema => 'dbo', source_name => 'c', capture_instance => 'all')")
    src.run("DROP TABLE dbo.c")
    src.run("INSERT INTO dbo.a VALUES (2, 'a2')")
    src.close()
    return config


def test_resync_of_another_table_works_and_of_the_gone_one_says_what_to_do(gone_config: Path) -> None:
    other = run_cli("resync", "--config", str(gone_config), "dbo.a")
    assert other.returncode == 0, other.stderr
    assert "resynced dbo.a: 2 rows" in other.stdout
    gone = run_cli("resync", "--config", str(gone_config), "dbo.c")
    assert gone.returncode == 2
    assert "Traceback" not in gone.stderr
    assert "dbo.c" in gone.stderr
    assert "no capture instance" in gone.stderr
    assert "sp_cdc_enable_table" in gone.stderr


def test_reconcile_compares_the_others_and_names_the_gone_table(gone_config: Path) -> None:
    run = run_cli("run", "--config", str(gone_config), "--until-caught-up")
    assert run.returncode == 0, run.stderr
    one = run_cli("reconcile", "--config", str(gone_config), "--settle", "0", "--format", "json", "dbo.a")
    assert one.returncode == 0, one.stderr
    assert [t["table"] for t in json.loads(one.stdout)["tables"]] == ["dbo.a"]
    every = run_cli("reconcile", "--config", str(gone_config), "--settle", "0", "--format", "json")
    assert "Traceback" not in every.stderr
    report = json.loads(every.stdout)
    by_table = {t["table"]: t for t in report["tables"]}
    assert by_table["dbo.a"]["status"] == "consistent"
    assert by_table["dbo.b"]["status"] == "consistent"
    assert "no capture instance" in by_table["dbo.c"]["error"]
    assert every.returncode != 0  # a table it could not compare is not a proof of equality


def test_check_names_the_gone_table_and_checks_the_others(gone_config: Path) -> None:
    checked = run_cli("check", "--config", str(gone_config))
    assert "Traceback" not in checked.stderr
    out = checked.stdout + checked.stderr
    assert "dbo.c" in out
    assert "no capture instance" in out
    assert "dbo.a" in out
    assert checked.returncode == 1
