"""Hostile names through every path that puts a name into SQL text (issue 15 point 2, FR-015).

The source is the CDC emulator; the names hold double quotes, brackets, semicolons, comment markers, a
``DROP TABLE`` fragment, a ``$b$`` dollar-quote tag, SQL keywords, spaces, non-ASCII letters and emoji, a name of
PostgreSQL's full 63 bytes (the emulator's limit; SQL Server's 128 characters are covered in
``tests/unit/pipeline/test_unmappable_names.py``) and two columns that differ only in case. They go through the
emulator (capture), the reader, the applier (``mssql2pg run``), a dead letter retried with ``mssql2pg dlq retry``,
``mssql2pg resync`` and ``mssql2pg reconcile``, all as the real command line. Each step checks the exact rows
and that the decoy table a ``DROP TABLE`` fragment names is still there.

A table whose columns differ only in case (``Code``, ``code``) cannot be mapped under the default lower-case
naming: it is paused with the reason and the remediation, and the other tables replicate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pg8000.native
import pytest
from click.testing import CliRunner

from mssql2pg.cli.dlq import command as dlq
from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.target import table_state

pytestmark = pytest.mark.integration

SCHEMA = 'Sch"ema; DROP TABLE dbo.decoy; --'
TABLE = "Tä[b]le /* x */ $b$ 🚀"
CAPTURE_INSTANCE = 'ci"; DROP $b$ -- ü'
KEY = 'I"d'
TEXT = "select;--"
ODD = "Ünï $b$ [x] ]]"
KEYWORD = "order"
LONG = "c" * 62 + "Z"  # 63 bytes, PostgreSQL's limit
COLUMNS = (KEY, TEXT, ODD, KEYWORD, LONG)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


SOURCE_TABLE = f"{_q(SCHEMA)}.{_q(TABLE)}"
TARGET_TABLE = f"{_q(SCHEMA.lower())}.{_q(TABLE.lower())}"
TARGET_COLUMNS = ", ".join(_q(c.lower()) for c in COLUMNS)
SELECTION = f"{_q(SCHEMA)}.{_q(TABLE)}"  # the tables: entry, in the configuration's quoting
TABLE_NAME = f"{SCHEMA}.{TABLE}"  # as mssql2pg names it in table_state and dead letters


def _source(url: str) -> pg8000.native.Connection:
    src = connect(url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.decoy (id int PRIMARY KEY)")
    src.run("CREATE TABLE dbo.ok (id int PRIMARY KEY, v text)")
    src.run('CREATE TABLE dbo."Codes" (id int PRIMARY KEY, "Code" text, code text)')
    src.run(f"CREATE SCHEMA {_q(SCHEMA)}")
    src.run(
        f"CREATE TABLE {SOURCE_TABLE} ({_q(KEY)} int PRIMARY KEY, {_q(TEXT)} text, {_q(ODD)} text, "
        f"{_q(KEYWORD)} int, {_q(LONG)} text)"
    )
    src.run('CREATE TABLE dbo."Items" (id int PRIMARY KEY)')
    src.run("CREATE TABLE dbo.items (id int PRIMARY KEY)")
    enable_table(src, "dbo", "ok")
    enable_table(src, "dbo", "Codes")
    enable_table(src, "dbo", "Items")
    enable_table(src, "dbo", "items")
    enable_table(src, SCHEMA, TABLE, capture_instance=CAPTURE_INSTANCE)
    return src


def _insert(src: pg8000.native.Connection, key: int, text: str) -> None:
    src.run(
        f"INSERT INTO {SOURCE_TABLE} VALUES (:k, :t, :o, :n, :l)", k=key, t=text, o=f"odd {key}", n=key * 10, l="long"
    )


def _rows(dst: pg8000.native.Connection) -> list[list[object]]:
    return dst.run(f"SELECT {TARGET_COLUMNS} FROM {TARGET_TABLE} ORDER BY 1")


def _source_rows(src: pg8000.native.Connection) -> list[list[object]]:
    return src.run(f"SELECT {', '.join(_q(c) for c in COLUMNS)} FROM {SOURCE_TABLE} ORDER BY 1")


def _ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_hostile_names_replicate_through_every_command_and_a_case_collision_pauses_only_its_table(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = _source(emulated_source_url)
    _insert(src, 1, "'); DROP TABLE dbo.decoy; --")
    _insert(src, 2, "$b$ end $b$")
    src.run("INSERT INTO dbo.ok VALUES (1, 'ok1')")
    src.run("INSERT INTO dbo.\"Codes\" VALUES (1, 'A', 'a')")
    src.run('INSERT INTO dbo."Items" VALUES (1)')
    src.run("INSERT INTO dbo.items VALUES (2)")
    config = write_config(
        tmp_path / "p.yaml",
        emulated_source_url,
        target_url,
        [SELECTION, "dbo.ok", "dbo.Codes", "[dbo].[Items]", "[dbo].[items]"],
    )

    # check names each table that cannot be mapped, with what to change
    checked = run_cli("check", "--config", str(config))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "dbo.Codes: cannot be mapped to a target table" in checked.stdout
    assert "dbo.Items, dbo.items would all be replicated into dbo.items" in checked.stdout
    assert "naming: preserve" in checked.stdout

    _ok("run", "--config", str(config), "--until-caught-up")  # does not exit at start because of them

    dst = connect(target_url)
    assert _rows(dst) == _source_rows(src)
    assert dst.run("SELECT id, v FROM dbo.ok") == [[1, "ok1"]]
    state, reason, remediation = table_state(dst, "dbo.Codes")
    assert state == "paused"
    assert "both become target column 'code'" in (reason or "")
    assert "naming: preserve" in (remediation or "")
    assert "mssql2pg resync dbo.Codes" in (remediation or "")
    assert dst.run("SELECT to_regclass('dbo.\"codes\"') IS NULL") == [[True]]  # nothing half-created
    assert table_state(dst, TABLE_NAME)[0] == "active"
    for name in ("dbo.Items", "dbo.items"):  # names that differ only in case: both paused, neither written
        state, reason, remediation = table_state(dst, name)
        assert state == "paused"
        assert "would all be replicated into dbo.items" in (reason or "")
        assert "naming: preserve" in (remediation or "")
    assert dst.run("SELECT to_regclass('dbo.items') IS NULL") == [[True]]
    refused = run_cli("resync", "--config", str(config), "[dbo].[Items]")
    assert refused.returncode != 0
    assert "would all be replicated into dbo.items" in refused.stdout + refused.stderr
    assert dst.run("SELECT to_regclass('dbo.items') IS NULL") == [[True]]

    # changes: update, delete, and a row the target refuses (a constraint the source does not have)
    dst.run(f"CREATE UNIQUE INDEX hostile_unique ON {TARGET_TABLE} ({_q(TEXT)})")
    src.run(f"UPDATE {SOURCE_TABLE} SET {_q(ODD)} = 'changed; --' WHERE {_q(KEY)} = 2")
    src.run(f"DELETE FROM {SOURCE_TABLE} WHERE {_q(KEY)} = 1")
    _insert(src, 3, "$b$ end $b$")  # same text as row 2: the target's unique index refuses it
    src.run("INSERT INTO dbo.ok VALUES (2, 'ok2')")
    _ok("run", "--config", str(config), "--until-caught-up")
    assert [r[0] for r in _rows(dst)] == [2]
    assert dst.run("SELECT count(*) FROM dbo.ok") == [[2]]
    [[letter, letter_table]] = dst.run("SELECT id, source_table FROM mssql2pg.dead_letters")
    assert letter_table == TABLE_NAME

    # dlq retry once the target accepts the row
    dst.run("DROP INDEX " + f"{_q(SCHEMA.lower())}.hostile_unique")
    result = CliRunner().invoke(dlq, ["retry", "--config", str(config), str(letter)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _rows(dst) == _source_rows(src)
    assert dst.run("SELECT status FROM mssql2pg.dead_letters") == [["resolved"]]

    # resync: drift in the target is repaired from a snapshot of the hostile table
    dst.run(f"DELETE FROM {TARGET_TABLE}")
    _ok("resync", "--config", str(config), SELECTION)
    _ok("run", "--config", str(config), "--until-caught-up")
    assert _rows(dst) == _source_rows(src)

    # reconcile compares the hostile table row by row; the unmappable table is an error, not the end of the run
    result = run_cli("reconcile", "--config", str(config), "--format", "json", "--settle", "5")
    assert result.returncode == 2, result.stdout + result.stderr
    report = {t["table"]: t for t in json.loads(result.stdout)["tables"]}
    assert report[TABLE_NAME]["status"] == "consistent"
    assert report[TABLE_NAME]["source_rows"] == report[TABLE_NAME]["target_rows"] == 2
    assert report["dbo.Codes"]["status"] == "error"
    assert "both become target column 'code'" in report["dbo.Codes"]["error"]

    assert src.run("SELECT to_regclass('dbo.decoy') IS NOT NULL") == [[True]]  # no fragment ran
    src.close()
    dst.close()
