"""``mssql2pg dlq retry`` of a change dead-lettered by ``on_target_conflict: dead-letter``: the source wins, as
of NOW. Re-applying the stored change itself would be wrong whenever the key changed again after it (later in
the same source transaction, or in a later one, a delete included): the retry rewrites the key from the source's
current row instead, the way ``reconcile --repair`` does, and only once the pipeline has applied the source up to
where it stands (else a change still on its way would race the rewrite)."""

from __future__ import annotations

import threading
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg import control
from mssql2pg.config import Config, load_config
from mssql2pg.deadletter_ops import retry_letters
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.reconcile.run import Settings, reconcile
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def _pair(source_url: str, target_url: str, tmp_path: Path) -> tuple[pg8000.native.Connection, ...]:
    src, dst = connect(source_url), connect(target_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "t")
    src.run("INSERT INTO dbo.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    return src, dst


def _config(tmp_path: Path, source_url: str, target_url: str) -> Config:
    path = write_config(
        tmp_path / "p.yaml", source_url, target_url, ["dbo.t"], defaults={"on_target_conflict": "dead-letter"}
    )
    return load_config(path)


def _catch_up(config: Config) -> None:
    Pipeline.from_config(config).run(threading.Event(), until_caught_up=True)


def _pending(dst: pg8000.native.Connection) -> list[tuple[int, str]]:
    return [(d.id, d.error_class) for d in control.list_dead_letters(dst, status="pending", pipeline="default")]


def _rows(conn: pg8000.native.Connection) -> list[list[object]]:
    return conn.run("SELECT id, v FROM dbo.t ORDER BY id")


@pytest.fixture
def pair(emulated_source_url: str, target_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    src, dst = _pair(emulated_source_url, target_url, tmp_path)
    config = _config(tmp_path, emulated_source_url, target_url)
    _catch_up(config)
    yield src, dst, config
    src.close()
    dst.close()


def test_changes_later_in_the_same_source_transaction_are_not_undone(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, config = pair
    dst.run("DELETE FROM dbo.t WHERE id = 1")  # behind the pipeline's back
    dst.run("INSERT INTO dbo.t (id, v, _cdc_lsn, _cdc_operation) VALUES (10, 'hand', '\\x00', 2)")
    src.run("BEGIN")
    src.run("UPDATE dbo.t SET v = 'a1' WHERE id = 1")  # update_missing
    src.run("DELETE FROM dbo.t WHERE id = 1")  # delete_missing
    src.run("INSERT INTO dbo.t VALUES (1, 'a-final')")  # applies
    src.run("INSERT INTO dbo.t VALUES (10, 's10')")  # insert_exists
    src.run("UPDATE dbo.t SET v = 's10u' WHERE id = 10")  # applies
    src.run("COMMIT")
    _catch_up(config)
    letters = _pending(dst)
    assert sorted(c for _, c in letters) == [
        "TargetConflictError [delete_missing]",
        "TargetConflictError [insert_exists]",
        "TargetConflictError [update_missing]",
    ]
    assert _rows(dst) == [[1, "a-final"], [2, "b"], [3, "c"], [10, "s10u"]]

    outcomes = retry_letters(config, [i for i, _ in letters])

    assert all(o.resolved for _, o in outcomes), outcomes
    assert _rows(dst) == _rows(src) == [[1, "a-final"], [2, "b"], [3, "c"], [10, "s10u"]]
    assert _pending(dst) == []
    (report,) = reconcile(config, ["dbo.t"], Settings(settle_seconds=5))
    assert report.status == "consistent", report


def test_a_key_the_source_deleted_since_is_not_brought_back(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, config = pair
    dst.run("INSERT INTO dbo.t (id, v, _cdc_lsn, _cdc_operation) VALUES (20, 'preloaded', '\\x00', 2)")
    src.run("INSERT INTO dbo.t VALUES (20, 'from-source')")  # insert_exists: dead-lettered
    _catch_up(config)
    src.run("DELETE FROM dbo.t WHERE id = 20")  # applied: the row is gone from the target
    _catch_up(config)
    ((letter, kind),) = _pending(dst)
    assert kind == "TargetConflictError [insert_exists]"

    ((_, outcome),) = retry_letters(config, [letter])

    assert outcome.resolved, outcome
    assert "no longer has" in outcome.message
    assert _rows(dst) == _rows(src) == [[1, "a"], [2, "b"], [3, "c"]]


def test_the_source_wins_over_a_foreign_stamp(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, config = pair
    dst.run("UPDATE dbo.t SET v = 'theirs', _cdc_lsn = '\\xffffffffffffffffffff' WHERE id = 2")
    src.run("UPDATE dbo.t SET v = 'b2' WHERE id = 2")  # foreign_lsn: dead-lettered, the target keeps 'theirs'
    _catch_up(config)
    ((letter, kind),) = _pending(dst)
    assert kind == "TargetConflictError [foreign_lsn]"
    assert dst.run("SELECT v FROM dbo.t WHERE id = 2") == [["theirs"]]

    ((_, outcome),) = retry_letters(config, [letter])

    assert outcome.resolved, outcome
    assert dst.run("SELECT v FROM dbo.t WHERE id = 2") == [["b2"]]
    ((stamp,),) = dst.run("SELECT _cdc_lsn FROM dbo.t WHERE id = 2")
    assert bytes(stamp) != b"\xff" * 10  # a source LSN again: later changes are ordered against it


def test_a_pipeline_behind_the_source_makes_the_retry_wait_and_say_so(pair, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    src, dst, config = pair
    dst.run("DELETE FROM dbo.t WHERE id = 3")
    src.run("UPDATE dbo.t SET v = 'c2' WHERE id = 3")  # update_missing
    _catch_up(config)
    ((letter, _),) = _pending(dst)
    src.run("UPDATE dbo.t SET v = 'c3' WHERE id = 3")  # not applied: no pipeline runs
    monkeypatch.setattr("mssql2pg.deadletter_ops.CONFLICT_SETTLE_SECONDS", 0.2)

    ((_, outcome),) = retry_letters(config, [letter])

    assert not outcome.resolved
    assert "behind" in outcome.message
    assert _pending(dst) == [(letter, "TargetConflictError [update_missing]")]
    assert dst.run("SELECT count(*) FROM dbo.t WHERE id = 3") == [[0]]  # nothing written
