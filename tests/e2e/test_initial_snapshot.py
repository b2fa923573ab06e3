"""A real ``mssql2pg run`` killed with SIGKILL in the middle of a table's initial snapshot (issue 14 point 1):
the restart continues after the last committed chunk (it does not start from zero), counts no row twice, and the
target ends equal to the source row for row, including changes made while the load was interrupted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import PipelineProcess, write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.e2e

ROWS = 60_000
CHUNK = 1_000


def _progress(dst: pg8000.native.Connection) -> list[Any] | None:
    if not dst.run("SELECT to_regclass('mssql2pg.snapshots') IS NOT NULL")[0][0]:
        return None
    rows = dst.run("SELECT state, rows_loaded FROM mssql2pg.snapshots WHERE source_table = 'dbo.big'")
    return rows[0] if rows else None


def _rows(conn: pg8000.native.Connection) -> list[list[Any]]:
    return conn.run("SELECT id, v, n FROM dbo.big ORDER BY id")


def _resumed_lines(log_text: str) -> list[dict[str, Any]]:
    lines = []
    for line in log_text.splitlines():
        if line.startswith("{") and '"initial snapshot resumed"' in line:
            lines.append(json.loads(line))
    return lines


def test_kill9_mid_load_resumes_from_the_last_committed_chunk(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.big (id int PRIMARY KEY, v text, n int)")
    src.run("INSERT INTO dbo.big SELECT 2 * g, repeat('x', 40) || g, g FROM generate_series(1, :n) g", n=ROWS)
    enable_table(src, "dbo", "big")  # the rows predate CDC: only the snapshot brings them
    config = write_config(
        tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.big"], snapshot={"chunk_rows": CHUNK}
    )
    pipeline = PipelineProcess(config, tmp_path / "run.log")
    try:
        pipeline.start()
        wait_for(
            lambda: (p := _progress(dst)) is not None and p[0] == "loading" and p[1] >= 3 * CHUNK,
            timeout=120,
            what="three chunks of the snapshot to be committed",
        )
        pipeline.kill9()
        state, committed = _progress(dst) or ["", 0]
        assert state == "loading", "the load finished before the kill; make the table bigger"
        assert 3 * CHUNK <= committed < ROWS
        assert len(_rows(dst)) == committed  # what is visible is exactly what was committed with its progress
        # Changes while the pipeline is down: behind the last committed key and ahead of it.
        src.run("UPDATE dbo.big SET v = 'changed', n = -1 WHERE id IN (2, 4, :ahead)", ahead=2 * ROWS - 10)
        src.run("DELETE FROM dbo.big WHERE id IN (6, :ahead)", ahead=2 * ROWS - 20)
        src.run("INSERT INTO dbo.big VALUES (1, 'new', 1), (:top, 'new', 0)", top=2 * ROWS + 1)
        pipeline.start()
        wait_for(lambda: (_progress(dst) or [""])[0] == "done", timeout=180, what="the snapshot to finish")
        wait_for(lambda: _rows(dst) == _rows(src), timeout=60, what="the target to equal the source row for row")
        resumed = _resumed_lines(pipeline.log_text())
        assert len(resumed) == 1, "the restarted process did not resume the load"
        assert resumed[0]["rows_loaded"] == committed  # it went on from the last committed chunk, not from zero
        loaded = (_progress(dst) or ["", 0])[1]
        assert loaded <= ROWS + 1  # every row counted once (one insert landed beyond the resumed key)
    finally:
        if pipeline.alive():
            pipeline.terminate()
        src.close()
        dst.close()
