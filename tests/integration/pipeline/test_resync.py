"""``mssql2pg resync TABLE``: snapshot one table at a known LSN, then streaming takes over (issue 4, point 8).

What must hold, whatever happened before: after the resync and a pipeline run, the target table equals the
source table row for row (extra target rows removed - or flagged in soft mode -, missing rows added, drifted
rows corrected), changes made after the snapshot arrive exactly once, and the other tables are untouched.
The emulated SQL Server is the source.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.errors import Mssql2pgError
from mssql2pg.pipeline import resync, watcher
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.resync import ResyncResult, TableStillReplicatedError, resync_table
from mssql2pg.pipeline.status import collect
from mssql2pg.positions import Lsn
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _run_once(config_path: Path) -> Pipeline:
    pipeline = Pipeline.from_config(load_config(config_path))
    pipeline.run(threading.Event(), until_caught_up=True)
    return pipeline


def _rows(conn: pg8000.native.Connection, table: str, where: str = "") -> list[list[Any]]:
    return conn.run(f"SELECT id, v FROM {table}{where} ORDER BY id")


def _state(dst: pg8000.native.Connection, table: str) -> str:
    return table_state(dst, table)[0]


def _resume_after(dst: pg8000.native.Connection, table: str) -> object:
    return dst.run("SELECT resume_after FROM mssql2pg.table_state WHERE source_table = :t", t=table)[0][0]


@pytest.fixture
def two_tables(emulated_source_url: str) -> pg8000.native.Connection:
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    return src


def _lose_changes_of_a(src: pg8000.native.Connection) -> None:
    """Two changes to dbo.a, then CDC cleanup removes them before replication saw them (an LSN gap)."""
    src.run("INSERT INTO dbo.a VALUES (2, 'lost')")
    src.run("UPDATE dbo.a SET v = 'a1 changed' WHERE id = 1")
    low = src.run("SELECT sys.fn_cdc_get_max_lsn()")[0][0]
    src.run("CALL sys.sp_cdc_cleanup_change_table(capture_instance => 'dbo_a', low_water_mark => :l)", l=low)


def test_resync_after_an_lsn_gap_restores_the_table_and_streaming_resumes(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = two_tables
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run_once(config)
    _lose_changes_of_a(src)
    _run_once(config)
    dst = connect(target_url)
    assert _state(dst, "dbo.a") == "needs-resync"
    # while the pipeline is stopped, cleanup runs again: the table's floor is now above the pipeline checkpoint
    src.run("UPDATE dbo.a SET v = 'lost too' WHERE id = 2")
    low = src.run("SELECT sys.fn_cdc_get_max_lsn()")[0][0]
    src.run("CALL sys.sp_cdc_cleanup_change_table(capture_instance => 'dbo_a', low_water_mark => :l)", l=low)

    result = resync_table(load_config(config), "dbo.a")

    assert isinstance(result, ResyncResult)
    assert result.rows == 2
    assert _rows(dst, "dbo.a") == _rows(src, "dbo.a") == [[1, "a1 changed"], [2, "lost too"]]
    assert _state(dst, "dbo.a") == "active"
    snapshot_lsn = dst.run("SELECT resume_after FROM mssql2pg.table_state WHERE source_table = 'dbo.a'")[0][0]
    assert Lsn(bytes(snapshot_lsn)) == result.lsn
    # snapshot rows carry the snapshot LSN, so older re-deliveries can never overwrite them
    assert {bytes(r[0]) for r in dst.run("SELECT _cdc_lsn FROM dbo.a")} == {result.lsn.raw}

    src.run("INSERT INTO dbo.a VALUES (3, 'after')")
    src.run("DELETE FROM dbo.a WHERE id = 2")
    src.run("INSERT INTO dbo.b VALUES (2, 'b2')")
    pipeline = _run_once(config)

    assert "dbo.a" in {str(t.source) for t in pipeline.tables}
    assert _state(dst, "dbo.a") == "active"  # the old checkpoint is below the table's floor: it starts at S
    assert _rows(dst, "dbo.a") == _rows(src, "dbo.a") == [[1, "a1 changed"], [3, "after"]]
    assert _resume_after(dst, "dbo.a") is None  # the pipeline checkpoint covers the table again
    assert _rows(dst, "dbo.b") == _rows(src, "dbo.b")
    src.close()
    dst.close()


def test_changes_the_running_pipeline_made_after_the_snapshot_are_caught_up(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """The pipeline went on without the paused table while the resync ran; on rejoining, the table's changes
    between the snapshot and the pipeline's checkpoint must not be skipped."""
    src = two_tables
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run_once(config)
    _lose_changes_of_a(src)
    _run_once(config)
    running = Pipeline.from_config(load_config(config))  # built while dbo.a needs a resync: it leaves dbo.a out

    result = resync_table(load_config(config), "dbo.a")
    src.run("INSERT INTO dbo.a VALUES (4, 'while running')")
    src.run("UPDATE dbo.a SET v = 'updated while running' WHERE id = 2")
    src.run("DELETE FROM dbo.a WHERE id = 1")
    src.run("INSERT INTO dbo.b VALUES (2, 'b2')")
    running.run(threading.Event(), until_caught_up=True)  # the checkpoint moves past the snapshot LSN
    dst = connect(target_url)
    checkpoint = Lsn(bytes(dst.run("SELECT lsn FROM mssql2pg.checkpoints")[0][0]))
    assert checkpoint > result.lsn
    assert _rows(dst, "dbo.a") == [[1, "a1 changed"], [2, "lost"]]  # untouched by the pipeline without it
    tables = {t["source"]: t for t in collect(config)["tables"]}
    assert tables["dbo.a"]["resumes_after"] == str(result.lsn)  # `mssql2pg status` shows it
    assert "resumes_after" not in tables["dbo.b"]

    src.run("INSERT INTO dbo.a VALUES (5, 'later')")
    _run_once(config)

    assert (
        _rows(dst, "dbo.a") == _rows(src, "dbo.a") == [[2, "updated while running"], [4, "while running"], [5, "later"]]
    )
    assert _rows(dst, "dbo.b") == _rows(src, "dbo.b")
    src.close()
    dst.close()


@pytest.mark.parametrize("delete_mode", ["hard", "soft"])
def test_resync_repairs_drift_of_an_active_table(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path, delete_mode: str
) -> None:
    src = two_tables
    src.run("INSERT INTO dbo.a SELECT g, 'v' || g FROM generate_series(2, 2500) AS g")
    tables: list[Any] = [{"name": "dbo.a", "delete_mode": delete_mode}, "dbo.b"]
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, tables)
    _run_once(config)
    dst = connect(target_url)
    # someone edits the warehouse by hand
    dst.run("DELETE FROM dbo.a WHERE id BETWEEN 10 AND 19")
    dst.run("UPDATE dbo.a SET v = 'drifted' WHERE id = 100")
    dst.run(
        "INSERT INTO dbo.a (id, v, _cdc_lsn, _cdc_operation) SELECT 9000 + g, 'extra', '\\x00'::bytea || "
        "decode(lpad('', 18, '0'), 'hex'), 2 FROM generate_series(1, 3) AS g"
    )
    b_before = dst.run("SELECT id, v, _cdc_lsn, _cdc_applied_at FROM dbo.b ORDER BY id")

    result = resync_table(load_config(config), "dbo.a")

    assert result.rows == 2500
    live = " WHERE NOT _cdc_deleted" if delete_mode == "soft" else ""
    assert _rows(dst, "dbo.a", live) == _rows(src, "dbo.a")
    removed = dst.run("SELECT count(*) FROM dbo.a WHERE id > 9000")[0][0]
    assert removed == (3 if delete_mode == "soft" else 0)
    assert result.removed == 3
    assert dst.run("SELECT id, v, _cdc_lsn, _cdc_applied_at FROM dbo.b ORDER BY id") == b_before

    src.run("UPDATE dbo.a SET v = 'x' WHERE id = 5")
    _run_once(config)
    assert _rows(dst, "dbo.a", live) == _rows(src, "dbo.a")
    src.close()
    dst.close()


def test_resync_of_a_table_enabled_while_nothing_was_captured_streams_from_its_instance_start(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """The instance starts above the source's max LSN (the log moved on; here another table was enabled in
    between): a resync's position is that start, every change below it being in the rows read, not a gap."""
    src = two_tables
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a"])
    _run_once(config)
    src.run("CREATE TABLE dbo.other (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "other")
    src.run("CREATE TABLE dbo.late (id int PRIMARY KEY, v text)")
    src.run("INSERT INTO dbo.late SELECT g, 'late' FROM generate_series(1, 5) g")
    enable_table(src, "dbo", "late")
    both = write_config(
        tmp_path / "both.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.late"], snapshot={"mode": "never"}
    )
    result = resync_table(load_config(both), "dbo.late")
    start = src.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'dbo_late'")[0][0]
    assert result.lsn == Lsn(start).decrement()
    src.run("UPDATE dbo.late SET v = 'streamed' WHERE id = 2")
    _run_once(both)
    dst = connect(target_url)
    assert _state(dst, "dbo.late") == "active"
    assert _rows(dst, "dbo.late") == _rows(src, "dbo.late")
    dst.close()


def test_resync_of_a_table_whose_source_gained_a_column_while_it_was_inactive_adds_the_column_first(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """dbo.b lost its changes (needs a resync); meanwhile its source gained a column, captured by a new instance,
    the old one retired. The resync brings the target table up to the instance first (the column added and
    recorded, as ``run`` does), then loads it whole: the new column arrives filled, and streaming goes on."""
    src = two_tables
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run_once(config)
    src.run("INSERT INTO dbo.b VALUES (2, 'lost')")
    low = src.run("SELECT sys.fn_cdc_get_max_lsn()")[0][0]
    src.run("CALL sys.sp_cdc_cleanup_change_table(capture_instance => 'dbo_b', low_water_mark => :l)", l=low)
    src.run("INSERT INTO dbo.a VALUES (2, 'a2')")
    _run_once(config)
    dst = connect(target_url)
    assert _state(dst, "dbo.b") == "needs-resync"
    src.run("ALTER TABLE dbo.b ADD COLUMN n int NOT NULL DEFAULT 7")
    src.run("UPDATE dbo.b SET n = id * 10")
    enable_table(src, "dbo", "b", capture_instance="dbo_b_v2")
    src.run("CALL sys.sp_cdc_disable_table(source_schema => 'dbo', source_name => 'b', capture_instance => 'dbo_b')")
    result = resync_table(load_config(config), "dbo.b")
    assert result.rows == 2
    assert dst.run("SELECT id, v, n FROM dbo.b ORDER BY id") == [[1, "b1", 10], [2, "lost", 20]]
    changes = [(c.source_table, c.change, c.column_name, c.status) for c in control.list_schema_changes(dst, "default")]
    assert ("dbo.b", "add-column", "n", "auto-applied") in changes
    src.run("INSERT INTO dbo.b VALUES (3, 'b3', 33)")
    _run_once(config)
    assert _state(dst, "dbo.b") == "active"
    assert dst.run("SELECT id, v, n FROM dbo.b ORDER BY id") == src.run("SELECT id, v, n FROM dbo.b ORDER BY id")
    dst.close()


def test_resync_of_a_table_whose_source_type_needs_review_stops_before_loading_and_says_what_to_do(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = two_tables
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, d numeric(5,2))")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c VALUES (1, 1.25)")
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.c"])
    _run_once(config)
    dst = connect(target_url)
    src.run("ALTER TABLE dbo.c ALTER COLUMN d TYPE real")
    src.run("UPDATE dbo.c SET d = 2.5")
    with pytest.raises(Mssql2pgError) as caught:
        resync_table(load_config(config), "dbo.c")
    (pending,) = control.list_schema_changes(dst, "default", "pending-review")
    assert (pending.change, pending.column_name) == ("type-change", "d")
    assert "cannot hold" in str(caught.value.args[0])
    assert caught.value.hint is not None
    assert f"mssql2pg schema approve {pending.id}" in caught.value.hint
    assert dst.run("SELECT id, d FROM dbo.c") == [[1, Decimal("1.25")]]  # nothing loaded
    dst.run(pending.ddl)
    approved = run_cli("schema", "approve", "--config", str(config), str(pending.id))
    assert approved.returncode == 0, approved.stderr
    result = resync_table(load_config(config), "dbo.c")
    assert result.rows == 1
    assert dst.run("SELECT id, d FROM dbo.c") == [[1, 2.5]]
    dst.close()


def test_a_resync_that_fails_after_the_table_left_the_stream_loses_none_of_its_changes(
    two_tables: pg8000.native.Connection,
    emulated_source_url: str,
    target_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resync pauses dbo.b; the running pipeline goes on without it, its checkpoint passing dbo.b's new
    changes; then the resync fails. dbo.b is put back active AND keeps the position it left the stream at, so
    it catches up on those changes instead of resuming from the newer checkpoint (it lost them before)."""
    src = two_tables
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run_once(config)

    def meanwhile_then_fail(*_: object) -> None:
        src.run("INSERT INTO dbo.b VALUES (2, 'while paused')")
        src.run("INSERT INTO dbo.a VALUES (2, 'a2')")
        _run_once(config)  # streams dbo.a only: the checkpoint passes dbo.b's insert
        raise Mssql2pgError("the resync failed", hint="run it again")

    monkeypatch.setattr(resync, "evolve_before_load", meanwhile_then_fail)
    with pytest.raises(Mssql2pgError, match="the resync failed"):
        resync_table(load_config(config), "dbo.b")
    dst = connect(target_url)
    assert _state(dst, "dbo.b") == "active"
    _run_once(config)
    assert _rows(dst, "dbo.b") == [[1, "b1"], [2, "while paused"]]
    assert _rows(dst, "dbo.a") == [[1, "a1"], [2, "a2"]]
    dst.close()


def test_resync_of_a_table_the_pipeline_does_not_replicate_is_refused(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a"])
    with pytest.raises(Mssql2pgError) as caught:
        resync_table(load_config(config), "dbo.b")
    assert "dbo.b" in str(caught.value)
    assert caught.value.hint is not None
    assert "tables" in caught.value.hint


def test_resync_command_line_reports_what_it_did(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    done = run_cli("resync", "--config", str(config), "dbo.a")
    assert done.returncode == 0, done.stderr
    assert "resynced dbo.a: 1 rows" in done.stdout
    missing = run_cli("resync", "--config", str(config), "dbo.nope")
    assert missing.returncode == 2
    assert "dbo.nope" in missing.stderr
    dst = connect(target_url)
    assert _rows(dst, "dbo.a") == [[1, "a1"]]
    dst.close()


def test_a_running_pipeline_takes_the_resynced_table_back(
    two_tables: pg8000.native.Connection,
    emulated_source_url: str,
    target_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)
    src = two_tables
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run_once(config)
    _lose_changes_of_a(src)
    dst = connect(target_url)
    stop = threading.Event()
    pipeline = Pipeline.from_config(load_config(config))
    thread = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: _state(dst, "dbo.a") == "needs-resync", what="dbo.a paused by the gap")
        src.run("INSERT INTO dbo.b VALUES (2, 'b2')")
        wait_for(lambda: len(_rows(dst, "dbo.b")) == 2, what="dbo.b replicating without dbo.a")

        resync_table(load_config(config), "dbo.a")
        src.run("INSERT INTO dbo.a VALUES (8, 'live')")
        src.run("INSERT INTO dbo.b VALUES (3, 'b3')")

        wait_for(lambda: _rows(dst, "dbo.a") == _rows(src, "dbo.a"), what="dbo.a streaming again", timeout=60)
        wait_for(lambda: _rows(dst, "dbo.b") == _rows(src, "dbo.b"), what="dbo.b still streaming")
        assert "dbo.a" in {str(t.source) for t in pipeline.tables}
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    dst.close()
    src.close()


def test_resync_of_a_table_the_running_pipeline_writes_waits_for_it_to_leave(
    two_tables: pg8000.native.Connection,
    emulated_source_url: str,
    target_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pipeline must not write the table between the snapshot LSN and the resync's commit: the resync pauses
    the table, waits until the running pipeline has re-planned without it, and only then reads the snapshot."""
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)
    src = two_tables
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    dst = connect(target_url)
    stop = threading.Event()
    pipeline = Pipeline.from_config(load_config(config))
    thread = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
    thread.start()
    writes = threading.Event()

    def keep_writing() -> None:
        writer = connect(emulated_source_url)
        n = 100
        while not writes.is_set():
            n += 1
            writer.run("INSERT INTO dbo.b VALUES (:n, 'w')", n=n)
            writer.run("UPDATE dbo.b SET v = 'u' || :n WHERE id = :m", n=n, m=n - 1)
            if n % 3 == 0:
                writer.run("DELETE FROM dbo.b WHERE id = :m", m=n - 2)
        writer.close()

    writer = threading.Thread(target=keep_writing, daemon=True)
    try:
        wait_for(lambda: _rows(dst, "dbo.b") == _rows(src, "dbo.b"), what="dbo.b replicated")
        writer.start()
        dst.run("DELETE FROM dbo.b WHERE id = 1")  # drift, repaired by the resync

        result = resync_table(load_config(config), "dbo.b", wait=30)

        assert result.rows >= 1
        writes.set()
        writer.join(timeout=30)
        wait_for(lambda: _rows(dst, "dbo.b") == _rows(src, "dbo.b"), what="dbo.b equal to the source", timeout=60)
        wait_for(lambda: "dbo.b" in {str(t.source) for t in pipeline.tables}, what="dbo.b replicated again")
        src.run("INSERT INTO dbo.a VALUES (9, 'a9')")
        wait_for(lambda: _rows(dst, "dbo.a") == _rows(src, "dbo.a"), what="dbo.a still replicating")
    finally:
        writes.set()
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert _state(dst, "dbo.b") == "active"
    dst.close()


def test_resync_gives_up_cleanly_when_a_writer_does_not_leave_the_table(
    two_tables: pg8000.native.Connection, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run_once(config)
    dst = connect(target_url)
    holder = connect(target_url)  # stands in for a pipeline that does not re-plan (e.g. --until-caught-up)
    assert control.try_claim_table(holder, "default", "dbo.a")
    with pytest.raises(TableStillReplicatedError) as caught:
        resync_table(load_config(config), "dbo.a", wait=0.5)
    assert "dbo.a" in str(caught.value)
    assert caught.value.hint is not None
    assert _state(dst, "dbo.a") == "active"  # put back as it was; nothing else changed
    assert _rows(dst, "dbo.a") == [[1, "a1"]]
    with pytest.raises(control.TableBusyError):  # and a pipeline applier refuses to write a claimed table
        control.claim_tables(dst, "default", ["dbo.a"])
    holder.close()
    dst.close()
