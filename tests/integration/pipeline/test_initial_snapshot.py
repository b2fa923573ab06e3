"""The initial snapshot (issue 14 point 1): a table the pipeline never replicated is loaded from the source
table, in chunks by key, while the other tables stream; then it streams from its snapshot LSN.

What must hold: rows that existed before CDC was enabled reach the target; changes made while the table loads
(inserts, updates, deletes, before and after the chunk being read) all arrive, exactly once and in order, so the
target equals the source row for row; the other tables keep streaming during the load; a table added to the
configuration of a pipeline that ran before is loaded the same way; ``snapshot.mode: never`` keeps the old
behaviour. The kill -9 case with a real process is in ``tests/e2e/test_initial_snapshot.py``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline import snapshot_load
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.status import collect
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _rows(conn: pg8000.native.Connection, table: str) -> list[list[Any]]:
    return conn.run(f"SELECT id, v, n FROM {table} ORDER BY id")


def _snapshot_row(dst: pg8000.native.Connection, table: str) -> list[Any] | None:
    if not dst.run("SELECT to_regclass('mssql2pg.snapshots') IS NOT NULL")[0][0]:
        return None
    rows = dst.run("SELECT state, rows_loaded, rows_estimated FROM mssql2pg.snapshots WHERE source_table = :t", t=table)
    return rows[0] if rows else None


def _big_table_before_cdc(src: pg8000.native.Connection, rows: int) -> None:
    """``dbo.big`` with ``rows`` rows (even ids, so inserts can land between them) written BEFORE CDC was enabled:
    no change table holds them, only a snapshot can bring them."""
    src.run("CREATE SCHEMA IF NOT EXISTS dbo")
    src.run("CREATE TABLE dbo.big (id int PRIMARY KEY, v text, n int)")
    src.run("INSERT INTO dbo.big SELECT 2 * g, 'row ' || g, g FROM generate_series(1, :n) g", n=rows)
    enable_table(src, "dbo", "big")


class Gate:
    """Holds the snapshot loader's read of chunk number ``after + 1`` until released (no sleeps: the test acts
    while the load is provably under way; chunks up to ``after`` get committed, none after)."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls = 0
        self.reached = threading.Event()
        self.release = threading.Event()

    def wrap(self, read: Callable[..., Any]) -> Callable[..., Any]:
        def gated(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.after + 1:
                self.reached.set()
                assert self.release.wait(60), "the test never released the snapshot loader"
            return read(*args, **kwargs)

        return gated


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate(after=2)
    monkeypatch.setattr(snapshot_load, "read_page", held.wrap(snapshot_load.read_page))
    yield held
    held.release.set()


class Running:
    """A pipeline replicating continuously in a thread."""

    def __init__(self, config: Path) -> None:
        self.pipeline = Pipeline.from_config(load_config(config))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.pipeline.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        self.pipeline.close()


def _mutate(src: pg8000.native.Connection, rng: random.Random, top: int) -> None:
    """One random source transaction on dbo.big: insert (between or after existing ids), update or delete."""
    pick = rng.random()
    key = rng.randrange(1, top)
    if pick < 0.4:
        src.run("INSERT INTO dbo.big VALUES (:k, 'new', :n) ON CONFLICT (id) DO NOTHING", k=key, n=rng.randrange(1000))
    elif pick < 0.8:
        src.run("UPDATE dbo.big SET v = 'updated', n = n + 1 WHERE id = :k", k=key)
    else:
        src.run("DELETE FROM dbo.big WHERE id = :k", k=key)


def test_preexisting_rows_load_while_changes_continue_and_other_tables_stream(
    emulated_source_url: str, target_url: str, tmp_path: Path, gate: Gate
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    _big_table_before_cdc(src, 3_000)
    src.run("CREATE TABLE dbo.small (id int PRIMARY KEY, v text, n int)")
    enable_table(src, "dbo", "small")
    src.run("INSERT INTO dbo.small VALUES (1, 's1', 1)")
    small = write_config(tmp_path / "small.yaml", emulated_source_url, target_url, ["dbo.small"])
    gate.release.set()  # dbo.small alone is loaded first, at once (a first start loads tables one after the other)
    Pipeline.from_config(load_config(small)).run(threading.Event(), until_caught_up=True)
    gate.calls, gate.release = 0, threading.Event()
    config = write_config(
        tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.big", "dbo.small"], snapshot={"chunk_rows": 500}
    )
    running = Running(config)
    try:
        assert gate.reached.wait(60), "the snapshot loader never reached its third chunk"
        # The third chunk is not read yet (the loader reads one page ahead): two chunks get committed, no more.
        wait_for(
            lambda: _snapshot_row(dst, "dbo.big") == ["loading", 1000, 3000], timeout=30, what="two chunks committed"
        )
        assert len(_rows(dst, "dbo.big")) == 1000
        # Online: the other table streams meanwhile.
        src.run("INSERT INTO dbo.small VALUES (2, 's2', 2)")
        wait_for(lambda: len(_rows(dst, "dbo.small")) == 2, timeout=30, what="dbo.small to stream during the load")
        # status, /readyz and the metrics say so.
        states = {t["source"]: t for t in collect(config)["tables"]}
        assert states["dbo.big"]["state"] == "snapshotting"
        assert states["dbo.big"]["snapshot"]["rows_loaded"] == 1000
        assert states["dbo.small"]["state"] == "active"
        _, ready = running.pipeline.obs.health.readiness()
        assert ready["tables"]["dbo.big"]["reason"].startswith("snapshotting: 1,000 of ~3,000 rows")
        metrics = running.pipeline.obs.metrics.render().decode()
        assert 'mssql2pg_snapshot_rows_loaded{table="dbo.big"} 1000.0' in metrics
        assert 'mssql2pg_snapshot_rows_estimated{table="dbo.big"} 3000.0' in metrics
        assert 'mssql2pg_table_state{state="snapshotting",table="dbo.big"} 1.0' in metrics
        # Changes on both sides of the chunk boundary while the load is held: before the last committed key,
        # inside the next chunk, and beyond.
        rng = random.Random(14)
        for key in (10, 998, 1000, 1001, 1002, 1500, 5000, 5999, 6000, 6002):
            src.run("UPDATE dbo.big SET v = 'held', n = -1 WHERE id = :k", k=key)
        src.run("DELETE FROM dbo.big WHERE id IN (4, 1004, 4000)")
        src.run("INSERT INTO dbo.big VALUES (3, 'ins', 3), (1003, 'ins', 1003), (7001, 'ins', 7001)")
        gate.release.set()
        # And a random workload for as long as the load runs (and a little after).
        while (_snapshot_row(dst, "dbo.big") or ["loading"])[0] == "loading":
            _mutate(src, rng, 6_200)
        for _ in range(50):
            _mutate(src, rng, 6_200)
        wait_for(
            lambda: (
                _rows(dst, "dbo.big") == _rows(src, "dbo.big") and _rows(dst, "dbo.small") == _rows(src, "dbo.small")
            ),
            timeout=60,
            what="the target to equal the source row for row",
        )
        assert collect(config)["tables"][0]["state"] == "active"
        assert dst.run("SELECT state FROM mssql2pg.table_state WHERE source_table = 'dbo.big'") == [["active"]]
    finally:
        running.close()
        src.close()
        dst.close()


def test_table_added_to_the_configuration_is_loaded_while_the_others_stream(
    emulated_source_url: str, target_url: str, tmp_path: Path, gate: Gate
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)  # dbo.a and dbo.b, CDC on, one row each
    src.run("INSERT INTO dbo.b SELECT g, 'b' || g FROM generate_series(2, 20) g")
    src.run("UPDATE dbo.b SET v = 'b changed' WHERE id = 3")
    src.run("DELETE FROM dbo.b WHERE id = 4")
    only_a = write_config(tmp_path / "a.yaml", emulated_source_url, target_url, ["dbo.a"])
    Pipeline.from_config(load_config(only_a)).run(threading.Event(), until_caught_up=True)
    src.run("INSERT INTO dbo.a VALUES (2, 'a2')")
    Pipeline.from_config(load_config(only_a)).run(threading.Event(), until_caught_up=True)
    # dbo.b's whole CDC history lies below the pipeline's checkpoint now: streaming alone would skip it.
    both = write_config(
        tmp_path / "ab.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"], snapshot={"chunk_rows": 4}
    )
    gate.calls = 0  # dbo.a's own first load went through the gate too
    running = Running(both)
    try:
        assert gate.reached.wait(60)
        wait_for(lambda: _snapshot_row(dst, "dbo.b") == ["loading", 8, 19], timeout=30, what="two chunks committed")
        src.run("INSERT INTO dbo.a VALUES (3, 'a3')")
        wait_for(
            lambda: len(dst.run("SELECT id FROM dbo.a")) == 3, timeout=30, what="dbo.a to stream while dbo.b loads"
        )
        src.run("UPDATE dbo.b SET v = 'during the load' WHERE id IN (2, 19)")
        gate.release.set()
        wait_for(
            lambda: dst.run("SELECT id, v FROM dbo.b ORDER BY id") == src.run("SELECT id, v FROM dbo.b ORDER BY id"),
            timeout=60,
            what="dbo.b to equal the source",
        )
        assert dst.run("SELECT id, v FROM dbo.a ORDER BY id") == src.run("SELECT id, v FROM dbo.a ORDER BY id")
    finally:
        running.close()
        src.close()
        dst.close()


def test_first_run_until_caught_up_loads_rows_that_predate_cdc(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    _big_table_before_cdc(src, 1_234)
    config = write_config(
        tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.big"], snapshot={"chunk_rows": 100}
    )
    Pipeline.from_config(load_config(config)).run(threading.Event(), until_caught_up=True)
    assert _rows(dst, "dbo.big") == _rows(src, "dbo.big")
    assert _snapshot_row(dst, "dbo.big") == ["done", 1234, 1234]
    # A later start does not load it again: it streams.
    src.run("UPDATE dbo.big SET v = 'later' WHERE id = 2")
    Pipeline.from_config(load_config(config)).run(threading.Event(), until_caught_up=True)
    assert _rows(dst, "dbo.big") == _rows(src, "dbo.big")
    assert _snapshot_row(dst, "dbo.big") == ["done", 1234, 1234]
    src.close()
    dst.close()


def test_snapshot_mode_never_streams_from_the_cdc_history_only(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    _big_table_before_cdc(src, 50)
    src.run("INSERT INTO dbo.big VALUES (1, 'after cdc', 1)")
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.big"], snapshot={"mode": "never"})
    Pipeline.from_config(load_config(config)).run(threading.Event(), until_caught_up=True)
    assert _rows(dst, "dbo.big") == [[1, "after cdc", 1]]  # today's behaviour: only what CDC captured
    assert dst.run("SELECT count(*) FROM mssql2pg.snapshots")[0][0] == 0
    src.close()
    dst.close()


def test_table_enabled_after_the_last_captured_change_is_loaded_and_streams(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """CDC enabled on a table holding rows while the source is idle: its capture instance starts after the
    source's max LSN, the snapshot LSN. That is no gap (the instance holds nothing older): it streams."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    only_a = write_config(tmp_path / "a.yaml", emulated_source_url, target_url, ["dbo.a"])
    Pipeline.from_config(load_config(only_a)).run(threading.Event(), until_caught_up=True)
    src.run("CREATE TABLE dbo.late (id int PRIMARY KEY, v text, n int)")
    src.run("INSERT INTO dbo.late SELECT g, 'late', g FROM generate_series(1, 30) g")
    enable_table(src, "dbo", "late")
    both = write_config(tmp_path / "both.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.late"])
    Pipeline.from_config(load_config(both)).run(threading.Event(), until_caught_up=True)
    src.run("UPDATE dbo.late SET v = 'streamed' WHERE id = 7")
    src.run("INSERT INTO dbo.a VALUES (5, 'a5')")
    Pipeline.from_config(load_config(both)).run(threading.Event(), until_caught_up=True)
    assert dst.run("SELECT state FROM mssql2pg.table_state WHERE source_table = 'dbo.late'") == [["active"]]
    assert _rows(dst, "dbo.late") == _rows(src, "dbo.late")
    src.close()
    dst.close()


def test_table_enabled_while_nothing_was_captured_streams_from_its_instance_start(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """On SQL Server the log moves on between commits, so an instance enabled while the source captured nothing
    starts well above the source's max LSN (here: another table enabled in between). The snapshot reads every
    change below that start, so its position is the start: no false LSN gap, the table streams."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    only_a = write_config(tmp_path / "a.yaml", emulated_source_url, target_url, ["dbo.a"])
    Pipeline.from_config(load_config(only_a)).run(threading.Event(), until_caught_up=True)
    src.run("CREATE TABLE dbo.other (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "other")
    src.run("CREATE TABLE dbo.late (id int PRIMARY KEY, v text, n int)")
    src.run("INSERT INTO dbo.late SELECT g, 'late', g FROM generate_series(1, 30) g")
    enable_table(src, "dbo", "late")
    max_lsn = src.run("SELECT sys.fn_cdc_get_max_lsn()")[0][0]
    start = src.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'dbo_late'")[0][0]
    assert int.from_bytes(start, "big") > int.from_bytes(max_lsn, "big") + 1  # the case under test
    both = write_config(tmp_path / "both.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.late"])
    Pipeline.from_config(load_config(both)).run(threading.Event(), until_caught_up=True)
    src.run("UPDATE dbo.late SET v = 'streamed' WHERE id = 7")
    src.run("DELETE FROM dbo.late WHERE id = 8")
    Pipeline.from_config(load_config(both)).run(threading.Event(), until_caught_up=True)
    assert dst.run("SELECT state, reason FROM mssql2pg.table_state WHERE source_table = 'dbo.late'")[0][0] == "active"
    assert _rows(dst, "dbo.late") == _rows(src, "dbo.late")
    assert dst.run("SELECT count(*) FROM mssql2pg.target_conflicts")[0][0] == 0
    src.close()
    dst.close()


def test_with_snapshot_mode_never_a_table_enabled_after_the_checkpoint_streams_from_its_instance_start(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """``snapshot.mode: never`` and a table added to the configuration whose capture instance starts above the
    pipeline's checkpoint (enabled later; the log moved on): it streams its whole CDC history, with no false
    LSN gap, also after a restart before any change of it."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    never = {"mode": "never"}
    only_a = write_config(tmp_path / "a.yaml", emulated_source_url, target_url, ["dbo.a"], snapshot=never)
    Pipeline.from_config(load_config(only_a)).run(threading.Event(), until_caught_up=True)
    src.run("CREATE TABLE dbo.other (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "other")
    src.run("CREATE TABLE dbo.late (id int PRIMARY KEY, v text, n int)")
    src.run("INSERT INTO dbo.late VALUES (1, 'before cdc', 1)")
    enable_table(src, "dbo", "late")
    both = write_config(tmp_path / "both.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.late"], snapshot=never)
    Pipeline.from_config(load_config(both)).run(threading.Event(), until_caught_up=True)
    Pipeline.from_config(load_config(both)).run(threading.Event(), until_caught_up=True)  # a restart, nothing new
    src.run("INSERT INTO dbo.late VALUES (2, 'after cdc', 2)")
    src.run("UPDATE dbo.late SET v = 'updated' WHERE id = 2")
    Pipeline.from_config(load_config(both)).run(threading.Event(), until_caught_up=True)
    assert dst.run("SELECT state FROM mssql2pg.table_state WHERE source_table = 'dbo.late'") == [["active"]]
    assert _rows(dst, "dbo.late") == [[2, "updated", 2]]  # only what CDC captured, as snapshot.mode: never says
    src.close()
    dst.close()


def test_a_load_left_by_a_table_no_longer_configured_is_not_shown_as_snapshotting(
    emulated_source_url: str, target_url: str, tmp_path: Path, gate: Gate
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    _big_table_before_cdc(src, 3_000)
    both = write_config(
        tmp_path / "both.yaml", emulated_source_url, target_url, ["dbo.big"], snapshot={"chunk_rows": 500}
    )
    running = Running(both)
    try:
        assert gate.reached.wait(60)
        wait_for(lambda: (_snapshot_row(dst, "dbo.big") or [""])[0] == "loading", timeout=30, what="the load")
        assert {t["source"]: t["state"] for t in collect(both)["tables"]} == {"dbo.big": "snapshotting"}
    finally:
        gate.release.set()
        running.close()
    other = write_config(tmp_path / "other.yaml", emulated_source_url, target_url, ["dbo.other"])
    (big,) = collect(other)["tables"]
    assert (big["source"], big["state"]) == ("dbo.big", "paused")  # its load is not under way: nothing resumes it
    assert big["snapshot"]["state"] == "loading"
    src.close()
    dst.close()


@pytest.mark.parametrize("policy", ["source-wins", "dead-letter"])
def test_changes_the_load_read_already_are_no_conflict_when_replayed_but_later_writes_by_others_are(
    emulated_source_url: str, target_url: str, tmp_path: Path, gate: Gate, policy: str
) -> None:
    """A writer runs during the load: the pages read after a change already hold it, and streaming replays it
    from the snapshot LSN on (a delete of a row the load never saw, an insert of a row it read). That is no
    write by someone else: no conflict, no dead letter. A write behind the pipeline's back after the load still
    is one."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    _big_table_before_cdc(src, 3_000)
    config = write_config(
        tmp_path / "p.yaml",
        emulated_source_url,
        target_url,
        ["dbo.big"],
        snapshot={"chunk_rows": 500},
        defaults={"on_target_conflict": policy},
    )
    running = Running(config)
    try:
        assert gate.reached.wait(60), "the snapshot loader never reached its third chunk"
        # rows of pages not read yet: those pages read them with these changes in
        src.run("DELETE FROM dbo.big WHERE id IN (4000, 5000)")
        src.run("INSERT INTO dbo.big VALUES (4001, 'ins', 1), (5001, 'ins', 2)")
        src.run("UPDATE dbo.big SET v = 'held' WHERE id IN (3000, 5998)")
        gate.release.set()
        rng = random.Random(15)
        while (_snapshot_row(dst, "dbo.big") or ["loading"])[0] == "loading":
            _mutate(src, rng, 6_200)
        for _ in range(30):
            _mutate(src, rng, 6_200)
        wait_for(lambda: _rows(dst, "dbo.big") == _rows(src, "dbo.big"), timeout=60, what="the target to converge")
        assert control.target_conflicts(dst, "default") == []
        assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters")[0][0] == 0
        # someone else deletes a target row; the source then updates it: that conflict is found
        key = dst.run("SELECT min(id) FROM dbo.big")[0][0]
        dst.run("DELETE FROM dbo.big WHERE id = :k", k=key)
        src.run("UPDATE dbo.big SET v = 'after the load' WHERE id = :k", k=key)
        wait_for(
            lambda: (
                [(c.source_table, c.kind, c.conflicts) for c in control.target_conflicts(dst, "default")]
                == [("dbo.big", "update_missing", 1)]
            ),
            timeout=60,
            what="the write by someone else after the load to be counted",
        )
        letters = dst.run("SELECT count(*) FROM mssql2pg.dead_letters")[0][0]
        assert letters == (1 if policy == "dead-letter" else 0)
    finally:
        gate.release.set()
        running.close()
        src.close()
        dst.close()
