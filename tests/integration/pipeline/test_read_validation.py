"""Validation at the read boundary (FR-014, issue 4 point 6), through the pipeline with the CDC emulator as source.

Faults are injected behind CDC's back, straight into the emulator's change tables (``cdc.<instance>_CT``):

* a value that does not decode: the change table's ``int`` column is altered to ``text`` and one captured row's
  value overwritten with ``'twenty'`` (the catalog still says ``int``). The row ends as a dead letter
  (``SourceValueError``); the other rows of its source transaction, later rows and the other table arrive.
* a change table that no longer has a captured column (``DROP COLUMN``): only that table pauses (state
  ``paused`` with reason and remediation in ``mssql2pg.table_state``); the other table goes on.
* a capture instance without a usable key (CDC enabled on a table without a primary key): that table is paused
  at start-up instead of stopping every table.

Every case runs with the reader in the pipeline's process and in a process of its own
(``MSSQL2PG__READER__SEPARATE_PROCESS``), where the fault mark and the table fault cross a process boundary.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pg8000.native
import pytest
from click.testing import CliRunner

from mssql2pg.cli.dlq import command as dlq
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.positions import Lsn
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.target import table_state

pytestmark = pytest.mark.integration

READERS = pytest.mark.parametrize("separate_process", [False, True], ids=["in-process", "reader-process"])


def _run(config: Path, separate_process: bool) -> Pipeline:
    env = {**os.environ, "MSSQL2PG__READER__SEPARATE_PROCESS": "true" if separate_process else "false"}
    pipeline = Pipeline.from_config(load_config(config, env))
    assert pipeline.config.reader.separate_process is separate_process
    pipeline.run(threading.Event(), until_caught_up=True)
    return pipeline


def _source(url: str) -> pg8000.native.Connection:
    src = connect(url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.a (id int PRIMARY KEY, qty int, note text)")
    src.run("CREATE TABLE dbo.b (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "a")
    enable_table(src, "dbo", "b")
    return src


def _dlq(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(dlq, [args[0], "--config", str(config), *args[1:]], catch_exceptions=False)
    return result.exit_code, result.output


@READERS
def test_an_undecodable_value_is_a_dead_letter_and_everything_else_applies(
    emulated_source_url: str, target_url: str, tmp_path: Path, separate_process: bool
) -> None:
    src = _source(emulated_source_url)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run(config, separate_process)
    src.run('ALTER TABLE cdc."dbo_a_CT" ALTER COLUMN qty TYPE text')  # behind CDC's back: catalog still says int
    src.run("BEGIN")
    src.run("INSERT INTO dbo.a VALUES (1, 10, 'ok'), (2, 20, 'bad'), (3, 30, 'ok')")
    src.run("INSERT INTO dbo.b VALUES (1, 'b1')")
    src.run("COMMIT")
    src.run("UPDATE cdc.\"dbo_a_CT\" SET qty = 'twenty' WHERE id = 2")
    src.run("INSERT INTO dbo.a VALUES (4, 40, 'later')")
    src.run("INSERT INTO dbo.b VALUES (2, 'b2')")

    pipeline = _run(config, separate_process)

    dst = connect(target_url)
    assert dst.run("SELECT id, qty FROM dbo.a ORDER BY id") == [[1, 10], [3, 30], [4, 40]]
    assert dst.run("SELECT id FROM dbo.b ORDER BY id") == [[1], [2]]
    [[letter_id, table, error_class, message, status]] = dst.run(
        "SELECT id, source_table, error_class, message, status FROM mssql2pg.dead_letters"
    )
    assert (table, error_class, status) == ("dbo.a", "SourceValueError", "pending")
    assert "column qty (int)" in message
    assert "'twenty'" in message
    max_lsn = Lsn.from_bytes(src.run("SELECT sys.fn_cdc_get_max_lsn()")[0][0])
    assert pipeline.applier.stats.checkpoint == max_lsn  # the checkpoint moved past the faulty row
    assert dst.run("SELECT state FROM mssql2pg.table_state ORDER BY source_table") == [["active"], ["active"]]

    code, out = _dlq(config, "show", str(letter_id))
    assert code == 0
    assert "SourceValueError" in out
    assert '"qty": "twenty"' in out  # the raw value as it was read
    code, out = _dlq(config, "retry", str(letter_id))
    assert code == 1
    assert "not retried, still pending" in out
    assert "Fix the row at the source" in out
    assert dst.run("SELECT status, retry_count FROM mssql2pg.dead_letters") == [["pending", 0]]
    src.close()
    dst.close()


@READERS
def test_a_change_table_missing_a_captured_column_pauses_only_its_table(
    emulated_source_url: str, target_url: str, tmp_path: Path, separate_process: bool
) -> None:
    src = _source(emulated_source_url)
    src.run("INSERT INTO dbo.a VALUES (1, 1, 'a1')")
    src.run("INSERT INTO dbo.b VALUES (1, 'b1')")
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run(config, separate_process)
    src.run("INSERT INTO dbo.a VALUES (2, 2, 'a2')")
    src.run("INSERT INTO dbo.b VALUES (2, 'b2')")
    src.run('ALTER TABLE cdc."dbo_a_CT" DROP COLUMN note')  # behind CDC's back
    src.run("INSERT INTO dbo.b VALUES (3, 'b3')")

    pipeline = _run(config, separate_process)

    dst = connect(target_url)
    assert dst.run("SELECT id FROM dbo.b ORDER BY id") == [[1], [2], [3]]
    assert dst.run("SELECT id FROM dbo.a ORDER BY id") == [[1]]
    state, reason, remediation = table_state(dst, "dbo.a")
    assert state == "paused"
    assert "does not deliver every captured column" in reason
    assert "note" in reason
    assert "re-create the capture instance" in remediation
    assert "mssql2pg resync dbo.a" in remediation
    assert table_state(dst, "dbo.b")[0] == "active"
    assert "dbo.a" not in {str(t.source) for t in pipeline.tables}
    assert 'mssql2pg_table_state{state="paused",table="dbo.a"} 1.0' in pipeline.obs.metrics.render().decode()

    # a restart leaves the paused table alone and replicates the others
    src.run("INSERT INTO dbo.b VALUES (4, 'b4')")
    _run(config, separate_process)
    assert dst.run("SELECT count(*) FROM dbo.b") == [[4]]
    src.close()
    dst.close()


@READERS
def test_a_capture_instance_without_a_key_pauses_its_table_at_start(
    emulated_source_url: str, target_url: str, tmp_path: Path, separate_process: bool
) -> None:
    src = _source(emulated_source_url)
    src.run("CREATE TABLE dbo.nokey (id int, v text)")
    enable_table(src, "dbo", "nokey")
    src.run("INSERT INTO dbo.nokey VALUES (1, 'x')")
    src.run("INSERT INTO dbo.b VALUES (1, 'b1')")
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.b", "dbo.nokey"])

    pipeline = _run(config, separate_process)

    dst = connect(target_url)
    assert dst.run("SELECT id FROM dbo.b") == [[1]]
    state, reason, remediation = table_state(dst, "dbo.nokey")
    assert state == "paused"
    assert "no primary key or unique index" in reason
    assert "mssql2pg resync dbo.nokey" in remediation
    assert [str(t.source) for t in pipeline.tables] == ["dbo.b"]
    src.close()
    dst.close()
