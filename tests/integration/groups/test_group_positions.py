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


def applied_at(dst: pg8000.native.Connection, table: str) -> dict[int, object]:
    """When each target row was last written: a change applied twice writes its row again."""
    return {row[0]: row[1] for row in dst.run(f"SELECT id, _cdc_applied_at FROM dbo.{table}")}


def assert_not_rewritten(before: dict[int, object], after: dict[int, object], table: str) -> None:
    rewritten = sorted(i for i, at in before.items() if after.get(i) != at)
    assert not rewritten, f"{table}: rows applied again (a repeated change): {rewritten}"


B1_IN_GA = [{"name": "dbo.b1", "group": "ga"}, *GROUPS]  # an explicit name claims its table before a wildcard


def test_a_table_moved_into_a_group_behind_it_skips_what_it_has(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """dbo.b1 moves from gb (ahead) to ga (behind): ga must not apply b1's changes up to gb's position again."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    four_tables(src)
    before_move = write_config(tmp_path / "v1.yaml", emulated_source_url, target_url, GROUPS)  # type: ignore[arg-type]
    after_move = write_config(tmp_path / "v2.yaml", emulated_source_url, target_url, B1_IN_GA)  # type: ignore[arg-type]

    write(src, 1, 3)
    run_group(before_move, "ga")
    write(src, 4, 6)
    run_group(before_move, "gb")  # gb is ahead of ga
    b1_before = applied_at(dst, "b1")

    run_group(after_move, "ga")
    write(src, 7, 8)
    run_group(after_move, "ga")
    run_group(after_move, "gb")

    assert_not_rewritten(b1_before, applied_at(dst, "b1"), "b1")
    assert_same(src, dst)
    groups = dict(dst.run("SELECT source_table, group_name FROM mssql2pg.table_state"))
    assert groups == {"dbo.a1": "ga", "dbo.a2": "ga", "dbo.b1": "ga", "dbo.b2": "gb"}
    src.close()
    dst.close()


def test_a_table_moved_into_a_group_ahead_of_it_catches_up(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """dbo.b1 moves from gb (behind) to ga (ahead): its changes between the two positions are not lost."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    four_tables(src)
    before_move = write_config(tmp_path / "v1.yaml", emulated_source_url, target_url, GROUPS)  # type: ignore[arg-type]
    after_move = write_config(tmp_path / "v2.yaml", emulated_source_url, target_url, B1_IN_GA)  # type: ignore[arg-type]

    write(src, 1, 3)
    run_group(before_move, "gb")
    write(src, 4, 6)
    run_group(before_move, "ga")  # ga is ahead of gb
    b1_before = applied_at(dst, "b1")

    run_group(after_move, "ga")
    write(src, 7, 8)
    run_group(after_move, "ga")
    run_group(after_move, "gb")

    assert_not_rewritten(b1_before, applied_at(dst, "b1"), "b1")
    assert_same(src, dst)
    src.close()
    dst.close()


def test_groups_start_from_the_position_without_a_group_and_back(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """A pipeline that ran without pipeline.group is split into groups (each inherits its position), and later
    run without a group again (each table keeps the position its group reached): nothing lost, nothing twice."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    four_tables(src)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, GROUPS)  # type: ignore[arg-type]

    write(src, 1, 3)
    run_group(config, None)
    first = {t: applied_at(dst, t) for t in ("a1", "a2", "b1", "b2")}
    write(src, 4, 6)
    run_group(config, "ga")
    run_group(config, "gb")
    for table, before in first.items():
        assert_not_rewritten(before, applied_at(dst, table), table)
    assert_same(src, dst)

    second = {t: applied_at(dst, t) for t in ("a1", "a2", "b1", "b2")}
    write(src, 7, 8)
    run_group(config, None)
    for table, before in second.items():
        assert_not_rewritten(before, applied_at(dst, table), table)
    assert_same(src, dst)
    src.close()
    dst.close()
