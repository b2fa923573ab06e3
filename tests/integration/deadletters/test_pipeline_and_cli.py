"""Dead letters through the real pipeline (``mssql2pg run --until-caught-up`` against the CDC emulator) and the
``mssql2pg dlq`` commands: list, show, retry after fixing the target, ignore.

The dirty data here is a target constraint the source does not have (a unique index, a foreign key): the
emulator's source is PostgreSQL, so values PostgreSQL rejects cannot be produced at the source; those cases are
fed to the applier directly in ``test_isolation.py``.
"""

from __future__ import annotations

from pathlib import Path

import pg8000.native
import pytest
from click.testing import CliRunner

from mssql2pg import control
from mssql2pg.cli.dlq import command as dlq
from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def _source(url: str) -> pg8000.native.Connection:
    src = connect(url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.people (id int PRIMARY KEY, email text)")
    src.run("CREATE TABLE dbo.orders (id int PRIMARY KEY, person int)")
    enable_table(src, "dbo", "people")
    enable_table(src, "dbo", "orders")
    return src


def _run(config: Path) -> None:
    result = run_cli("run", "--config", str(config), "--until-caught-up")
    assert result.returncode == 0, result.stdout + result.stderr


def _dlq(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(dlq, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_conflicting_rows_dead_letter_then_retry_resolves_and_ignore_marks(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = _source(emulated_source_url)
    src.run("INSERT INTO dbo.people VALUES (1, 'ann@x')")
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.people", "dbo.orders"])
    _run(config)
    dst = connect(target_url)
    dst.run("CREATE UNIQUE INDEX people_email ON dbo.people (email)")  # the source has no such constraint
    # one source transaction: a good row, two rows the target refuses, and a row of another table
    src.run("BEGIN")
    src.run("INSERT INTO dbo.people VALUES (2, 'bob@x'), (3, 'ann@x'), (4, 'ann@x')")
    src.run("INSERT INTO dbo.orders VALUES (10, 2)")
    src.run("COMMIT")
    src.run("INSERT INTO dbo.people VALUES (5, 'eve@x')")

    _run(config)

    assert dst.run("SELECT id FROM dbo.people ORDER BY id") == [[1], [2], [5]]
    assert dst.run("SELECT id FROM dbo.orders") == [[10]]
    letters = dst.run(
        "SELECT id, source_table, status, source_tran_id IS NOT NULL, error_class "
        "FROM mssql2pg.dead_letters ORDER BY id"
    )
    assert [row[1:] for row in letters] == [["dbo.people", "pending", True, "DatabaseError [23505]"]] * 2
    first, second = (row[0] for row in letters)
    tran_ids = dst.run("SELECT DISTINCT source_tran_id FROM mssql2pg.dead_letters")
    assert len(tran_ids) == 1  # both from the same source transaction, and it says which

    code, out = _dlq("list", "--config", str(config))
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "TABLE", "COMMIT"]
    assert len(out.splitlines()) == 3
    assert "people_email" in out
    code, out = _dlq("show", "--config", str(config), str(first))
    assert code == 0
    assert '"email": "ann@x"' in out
    assert "unique" in out
    assert "Traceback" in out

    # the cause is still there: retry fails, stays pending, and counts the attempt
    code, out = _dlq("retry", "--config", str(config), str(first))
    assert code == 1
    assert "failed again" in out
    assert dst.run("SELECT status, retry_count FROM mssql2pg.dead_letters WHERE id = :i", i=first) == [["pending", 1]]

    # refused again for another reason: the letter keeps why it was dead-lettered, and tells the retry's refusal
    dst.run("DROP INDEX dbo.people_email")
    dst.run("ALTER TABLE dbo.people ADD CONSTRAINT no_ann CHECK (email <> 'ann@x') NOT VALID")
    code, out = _dlq("retry", "--config", str(config), str(first))
    assert code == 1
    assert "no_ann" in out
    [[error_class, message, last_error, retries]] = dst.run(
        "SELECT error_class, message, last_error, retry_count FROM mssql2pg.dead_letters WHERE id = :i", i=first
    )
    assert (error_class, retries) == ("DatabaseError [23505]", 2)
    assert "people_email" in message
    assert last_error.startswith("DatabaseError [23514]: ")
    assert "no_ann" in last_error
    code, out = _dlq("list", "--config", str(config))
    [line] = [text for text in out.splitlines() if text.startswith(str(first))]
    assert "DatabaseError [23505]" in line
    assert "last retry: DatabaseError [23514]" in line
    code, out = _dlq("show", "--config", str(config), str(first))
    assert "error class:        DatabaseError [23505]" in out
    assert "last retry error:   DatabaseError [23514]" in out
    dst.run("ALTER TABLE dbo.people DROP CONSTRAINT no_ann")

    code, out = _dlq("retry", "--config", str(config), str(first))
    assert code == 0, out
    assert "resolved" in out
    code, out = _dlq("ignore", "--config", str(config), str(second))
    assert code == 0
    assert dst.run("SELECT id, status FROM mssql2pg.dead_letters ORDER BY id") == [
        [first, "resolved"],
        [second, "ignored"],
    ]
    assert dst.run("SELECT id, email, _cdc_lsn IS NOT NULL FROM dbo.people ORDER BY id") == [
        [1, "ann@x", True],
        [2, "bob@x", True],
        [3, "ann@x", True],
        [5, "eve@x", True],
    ]
    code, out = _dlq("list", "--config", str(config))
    assert out.strip() == "no pending dead letters"
    assert control.count_dead_letters_by_status(dst, "default") == {"resolved": 1, "ignored": 1}
    code, out = _dlq("list", "--config", str(config), "--status", "all")
    assert len(out.splitlines()) == 3
    # a resolved or ignored dead letter is not retried again
    code, out = _dlq("retry", "--config", str(config), str(second))
    assert code == 1
    assert "status is ignored" in out

    # a later source change of the retried key still wins
    src.run("UPDATE dbo.people SET email = 'new@x' WHERE id = 3")
    _run(config)
    assert dst.run("SELECT email FROM dbo.people WHERE id = 3") == [["new@x"]]
    src.close()
    dst.close()


def test_retry_never_overwrites_a_newer_row(emulated_source_url: str, target_url: str, tmp_path: Path) -> None:
    src = _source(emulated_source_url)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.people", "dbo.orders"])
    _run(config)
    dst = connect(target_url)
    dst.run("ALTER TABLE dbo.orders ADD FOREIGN KEY (person) REFERENCES dbo.people (id)")
    src.run("INSERT INTO dbo.orders VALUES (1, 7)")  # refused: no person 7 in the target
    _run(config)
    [[letter_id]] = dst.run("SELECT id FROM mssql2pg.dead_letters")
    src.run("INSERT INTO dbo.people VALUES (7, 'g@x')")
    src.run("DELETE FROM dbo.orders WHERE id = 1")
    src.run("INSERT INTO dbo.orders VALUES (1, 7)")
    _run(config)
    newer = dst.run("SELECT person, _cdc_lsn FROM dbo.orders WHERE id = 1")
    code, out = _dlq("retry", "--config", str(config), str(letter_id))
    assert code == 0, out
    assert dst.run("SELECT person, _cdc_lsn FROM dbo.orders WHERE id = 1") == newer
    assert "nothing to apply: the target already holds a later change of this key" in out  # not "applied"
    src.close()
    dst.close()


def test_stale_events_are_flagged_through_the_pipeline(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = _source(emulated_source_url)
    src.run("INSERT INTO dbo.people VALUES (1, 'a@x')")
    config = write_config(
        tmp_path / "p.yaml",
        emulated_source_url,
        target_url,
        ["dbo.people", "dbo.orders"],
        stale_after="1ms",
        snapshot={"mode": "never"},  # staleness is about streamed changes; a snapshot's rows are current
    )
    _run(config)
    dst = connect(target_url)
    assert dst.run("SELECT id, _cdc_stale FROM dbo.people") == [[1, True]]
    dst.close()
    src.close()


def test_dlq_on_a_target_that_never_replicated(target_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.yaml", target_url, target_url, ["dbo.t"])
    code, out = _dlq("list", "--config", str(config), "--status", "all")
    assert code == 0
    assert out.strip() == "no dead letters"
    result = CliRunner().invoke(dlq, ["show", "--config", str(config), "1"])
    assert result.exit_code == 1
    assert "no dead letter with id 1" in result.output
