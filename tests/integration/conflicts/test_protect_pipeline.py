"""``target.protect`` with the whole pipeline (the emulated SQL Server, a local target): installed at start, the
initial snapshot, streaming, ``mssql2pg resync`` and ``reconcile --repair`` all write through it, foreign writes
are refused, and ``protect: false`` removes it at the next start."""

from __future__ import annotations

import threading
from pathlib import Path

import pg8000.exceptions
import pg8000.native
import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.resync import resync_table
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def guarded(dst: pg8000.native.Connection) -> list[str]:
    return [
        r[0]
        for r in dst.run(
            "SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
            "WHERE g.tgname = 'mssql2pg_protect' ORDER BY 1"
        )
    ]


def run_once(config: Path) -> None:
    Pipeline.from_config(load_config(config)).run(threading.Event(), until_caught_up=True)


def test_every_mssql2pg_writer_passes_the_guard_and_others_are_refused(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    src.run("INSERT INTO dbo.t SELECT g, 'before cdc ' || g FROM generate_series(1, 50) AS g")  # the snapshot's
    enable_table(src, "dbo", "t")
    src.run("INSERT INTO dbo.t VALUES (51, 'streamed')")
    on = write_config(
        tmp_path / "on.yaml", emulated_source_url, target_url, ["dbo.t"], target={"url": target_url, "protect": True}
    )
    dst = connect(target_url)

    run_once(on)  # the initial snapshot, handed over to streaming
    run_once(on)
    assert guarded(dst) == ["t"]
    assert dst.run("SELECT count(*) FROM dbo.t") == [[51]]
    with pytest.raises(pg8000.exceptions.DatabaseError, match="protected"):
        dst.run("DELETE FROM dbo.t WHERE id = 1")

    src.run("UPDATE dbo.t SET v = 'changed' WHERE id = 2")
    run_once(on)
    assert dst.run("SELECT v FROM dbo.t WHERE id = 2") == [["changed"]]

    result = resync_table(load_config(on), "dbo.t")
    assert result.rows == 51

    # drift made on purpose past the guard (the documented way), then repaired by reconcile --repair
    dst.run("SET mssql2pg.writer = 'on'")
    dst.run("DELETE FROM dbo.t WHERE id BETWEEN 10 AND 12")
    dst.run("RESET mssql2pg.writer")
    repaired = run_cli("reconcile", "--config", str(on), "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert dst.run("SELECT count(*) FROM dbo.t") == [[51]]

    off = write_config(tmp_path / "off.yaml", emulated_source_url, target_url, ["dbo.t"])
    run_once(off)
    assert guarded(dst) == []
    dst.run("DELETE FROM dbo.t WHERE id = 1")  # allowed again
    src.close()
    dst.close()


def test_a_command_run_with_protect_false_while_the_guard_is_installed_says_what_the_guard_says(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """Sessions of a configuration with ``protect: false`` carry no mark, so the guard refuses them: each command
    tells the guard's message and its hint (use the configuration with ``target.protect: true``) in one line,
    not the hint for a missing grant and not the driver's field dict."""
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "t")
    src.run("INSERT INTO dbo.t VALUES (1, 'one'), (2, 'two')")
    on = write_config(
        tmp_path / "on.yaml", emulated_source_url, target_url, ["dbo.t"], target={"url": target_url, "protect": True}
    )
    off = write_config(tmp_path / "off.yaml", emulated_source_url, target_url, ["dbo.t"])
    run_once(on)
    run_once(on)
    dst = connect(target_url)
    dst.run("SET mssql2pg.writer = 'on'")
    dst.run("DELETE FROM dbo.t WHERE id = 2")
    dst.run("RESET mssql2pg.writer")

    resync = run_cli("resync", "--config", str(off), "dbo.t")
    assert resync.returncode != 0
    line = resync.stderr.strip().splitlines()[-1]
    assert "dbo.t is replicated by mssql2pg and protected (target.protect)" in line, line
    assert "when its configuration has target.protect: true" in line, line
    assert "privileges listed in docs/configuration.md" not in line, line

    repair = run_cli("reconcile", "--config", str(off), "--repair")
    assert repair.returncode != 0
    output = repair.stdout + repair.stderr
    assert "{'S'" not in output, output
    [error] = [text for text in output.splitlines() if "error:" in text]
    assert "dbo.t is replicated by mssql2pg and protected (target.protect)" in error, output
    assert "when its configuration has target.protect: true" in output, output
    src.close()
    dst.close()
