"""Each table group keeps its own position (issue 16, point 1).

One config, tables in two groups, one process per group (``pipeline.group``): the groups must not share, and
so overwrite, one checkpoint. Before the fix the checkpoint row was keyed by ``pipeline.name`` alone: the group
that ran second started from the position of the first and silently skipped its own tables' changes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration

GROUPS = [{"name": "dbo.a*", "group": "ga"}, {"name": "dbo.b*", "group": "gb"}]


def four_tables(src: pg8000.native.Connection) -> None:
    src.run("CREATE SCHEMA dbo")
    for name in ("a1", "a2", "b1", "b2"):
        src.run(f"CREATE TABLE dbo.{name} (id int PRIMARY KEY, v text)")
        enable_table(src, "dbo", name)


def run_group(config: Path, group: str | None) -> Pipeline:
    env = {"MSSQL2PG__PIPELINE__GROUP": group} if group is not None else {}
    pipeline = Pipeline.from_config(load_config(config, env))
    pipeline.run(threading.Event(), until_caught_up=True)
    return pipeline


def rows(conn: pg8000.native.Connection, table: str) -> list[list[object]]:
    return conn.run(f"SELECT id, v FROM dbo.{table} ORDER BY id")


def write(src: pg8000.native.Connection, first: int, last: int) -> None:
    """One transaction per id: every table gets a row (so both groups' tables change at every LSN)."""
    for i in range(first, last + 1):
        src.run("BEGIN")
        for table in ("a1", "a2", "b1", "b2"):
            src.run(f"INSERT INTO dbo.{table} VALUES (:i, :v)", i=i, v=f"{table}-{i}")
        src.run("COMMIT")


def assert_same(src: pg8000.native.Connection, dst: pg8000.native.Connection) -> None:
    for table in ("a1", "a2", "b1", "b2"):
        assert rows(dst, table) == rows(src, table), table


def test_two_groups_keep_their_own_positions(emulated_source_url: str, target_url: str, tmp_path: Path) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    four_tables(src)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, GROUPS)  # type: ignore[arg-type]

    write(src, 1, 5)
    run_group(config, "ga")
    write(src, 6, 8)
    run_group(config, "gb")  # must start from its own (empty) position, not from ga's
    write(src, 9, 10)
    run_group(config, "ga")  # and ga from its own, not from gb's
    run_group(config, "gb")

    assert_same(src, dst)
    src.close()
    dst.close()
