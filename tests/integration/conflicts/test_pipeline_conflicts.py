"""Writes to the target by someone else through the whole pipeline (the emulated SQL Server and a local target):
rows deleted, inserted and updated in the target behind the pipeline's back, then the source changes the same
keys. Each conflict is detected, counted (metric and ``mssql2pg status``'s store) and logged once; the final state
follows ``on_target_conflict`` exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
import structlog

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.model import TARGET_CONFLICT_KINDS
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration

CONFLICT = "target conflict: the target table was written by someone else"


def _metric(pipeline: Pipeline, line_start: str) -> float | None:
    for line in pipeline.obs.metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def replicated(src: pg8000.native.Connection, source_url: str, target_url: str, tmp: Path, policy: str) -> Any:
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "t")
    src.run("INSERT INTO dbo.t VALUES (1, 'a'), (2, 'b'), (3, 'c'), (5, 'e')")
    config = load_config(
        write_config(tmp / "p.yaml", source_url, target_url, ["dbo.t"], defaults={"on_target_conflict": policy})
    )
    Pipeline.from_config(config).run(threading.Event(), until_caught_up=True)
    return config


def behind_the_back(dst: pg8000.native.Connection) -> None:
    dst.run("DELETE FROM dbo.t WHERE id IN (1, 5)")
    dst.run("INSERT INTO dbo.t (id, v, _cdc_lsn, _cdc_operation) VALUES (6, 'theirs', '\\x00', 2)")
    dst.run("UPDATE dbo.t SET v = 'theirs' WHERE id = 3")  # metadata untouched: cannot be told apart


def the_source_goes_on(src: pg8000.native.Connection) -> None:
    src.run("UPDATE dbo.t SET v = 'a2' WHERE id = 1")
    src.run("DELETE FROM dbo.t WHERE id = 5")
    src.run("INSERT INTO dbo.t VALUES (6, 'f')")
    src.run("UPDATE dbo.t SET v = 'c2' WHERE id = 3")
    src.run("UPDATE dbo.t SET v = 'b2' WHERE id = 2")


def counted(dst: pg8000.native.Connection, pipeline: str) -> dict[tuple[str, str], int]:
    return {(c.source_table, c.kind): c.conflicts for c in control.target_conflicts(dst, pipeline)}


FOUND = {"update_missing": 1, "delete_missing": 1, "insert_exists": 1, "foreign_lsn": 0}


@pytest.mark.parametrize("policy", ["source-wins", "dead-letter"])
def test_each_conflict_is_detected_counted_logged_once_and_the_policy_decides_the_final_state(
    emulated_source_url: str, target_url: str, tmp_path: Path, policy: str, logs: list[dict[str, Any]]
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    config = replicated(src, emulated_source_url, target_url, tmp_path, policy)
    behind_the_back(dst)
    the_source_goes_on(src)

    pipeline = Pipeline.from_config(config)
    pipeline.run(threading.Event(), until_caught_up=True)

    for kind in TARGET_CONFLICT_KINDS:
        assert _metric(pipeline, f'mssql2pg_target_conflicts_total{{kind="{kind}",table="dbo.t"}}') == FOUND[kind]
    stored = counted(dst, config.pipeline.name)
    assert stored == {("dbo.t", kind): n for kind, n in FOUND.items() if n}
    logged = sorted((e["kind"], e["key"]["id"]) for e in logs if e["event"] == CONFLICT)
    assert logged == [("delete_missing", 5), ("insert_exists", 6), ("update_missing", 1)]
    source = src.run("SELECT id, v FROM dbo.t ORDER BY id")
    target = dst.run("SELECT id, v FROM dbo.t ORDER BY id")
    letters = dst.run("SELECT error_class, operation FROM mssql2pg.dead_letters ORDER BY error_class")
    if policy == "source-wins":
        assert target == source == [[1, "a2"], [2, "b2"], [3, "c2"], [6, "f"]]
        assert letters == []
    else:  # the target rows stay as someone left them; the changes wait in the dead letters
        assert target == [[2, "b2"], [3, "c2"], [6, "theirs"]]
        assert letters == [
            ["TargetConflictError [delete_missing]", 1],
            ["TargetConflictError [insert_exists]", 2],
            ["TargetConflictError [update_missing]", 4],
        ]

    # a restart re-reads nothing twice: the counts stay (exactly once, committed with the checkpoint)
    again = Pipeline.from_config(config)
    again.run(threading.Event(), until_caught_up=True)
    assert counted(dst, config.pipeline.name) == stored
    assert _metric(again, 'mssql2pg_target_conflicts_total{kind="update_missing",table="dbo.t"}') == 0
    src.close()
    dst.close()
