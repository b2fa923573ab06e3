"""Filling an added column in the rows no change table carried it for (``pipeline/column_fill.py``, issue 12
point 3), step by step: the pipeline is run until caught up (which never fills), then the filler is driven
directly, so each case states exactly which rows it may set and which it must leave to the stream."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pg8000.native
import pytest
import sqlalchemy as sa

from mssql2pg import control
from mssql2pg.config import Config, load_config
from mssql2pg.emulator import connect
from mssql2pg.observability import Observability
from mssql2pg.pipeline import column_fill
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.column_fill import ColumnFill, Filled, fill_rows
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.reconcile.run import Settings, reconcile
from mssql2pg.sink.schema import TargetTable
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import Running, enable_instance, in_transaction, retrying

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, source_url: str, target_url: str, **extra: object) -> Config:
    """The pipeline's configuration; the fill off unless ``extra`` says otherwise, so that running it until caught
    up (which fills at its end) leaves the gap for the case to fill step by step."""
    extra.setdefault("schema_evolution", {"fill_added_columns": False})
    return load_config(
        write_config(
            tmp_path / "p.yaml", source_url, target_url, ["dbo.a", "dbo.b"], snapshot={"mode": "never"}, **extra
        )
    )


def _catch_up(config: Config) -> Pipeline:
    pipeline = Pipeline.from_config(config)
    pipeline.run(threading.Event(), until_caught_up=True)
    return Pipeline.from_config(config)  # the plan as it is now (both capture instances of dbo.a)


def _switched_with_a_gap(src: pg8000.native.Connection, config: Config) -> Pipeline:
    """dbo.a gains ``note`` (and ``at``, a datetimeoffset: two target columns): id 1 and 2 are changed between the
    ALTER and the new instance (the gap), id 3 after it; the pipeline applies all of it."""
    src.run("INSERT INTO dbo.a VALUES (2, 'a2'), (4, 'a4')")
    _catch_up(config)
    src.run("ALTER TABLE dbo.a ADD COLUMN note varchar(10), ADD COLUMN at sys.datetimeoffset")
    src.run("UPDATE dbo.a SET note = 'gap', at = '2026-01-02 03:04:05+02:00' WHERE id = 1")
    src.run("UPDATE dbo.a SET note = 'gap2', v = 'a2x' WHERE id = 2")
    enable_instance(src, "a", "dbo_a_v2")
    src.run("INSERT INTO dbo.a VALUES (3, 'a3', 'new', '2026-05-06 07:08:09-05:00')")
    return _catch_up(config)


@dataclass
class Switched:
    """Source, target, configuration and engine of a pipeline that applied an added-column switch with a gap
    (:func:`_switched_with_a_gap`), and the target table of dbo.a as planned then."""

    src: pg8000.native.Connection
    dst: pg8000.native.Connection
    config: Config
    engine: sa.Engine
    pipeline: Pipeline

    @property
    def table(self) -> TargetTable:
        (table,) = [t for t in self.pipeline.tables if str(t.source) == "dbo.a"]
        return table

    def fill_note(self) -> Filled:
        """The fill of ``note`` alone, as the filler runs it."""
        note = [c for c in self.table.columns if c.name == "note"]
        return fill_rows(self.engine, target_connector(self.config), self.table, self.table.capture_instance, note)


@contextmanager
def _switched(source_url: str, target_url: str, tmp_path: Path, **extra: object) -> Iterator[Switched]:
    src, dst = connect(source_url), connect(target_url)
    two_cdc_tables(src)
    config = _config(tmp_path, source_url, target_url, **extra)
    engine = source_engine(config)
    try:
        yield Switched(src, dst, config, engine, _switched_with_a_gap(src, config))
    finally:
        engine.dispose()
        src.close()
        dst.close()


def _notes(conn: pg8000.native.Connection) -> list[list[object]]:
    return conn.run("SELECT id, v, note FROM dbo.a ORDER BY id")


def _instants(dst: pg8000.native.Connection) -> list[list[object]]:
    """The datetimeoffset column as the target holds it: the instant, and the offset beside it (minutes)."""
    return dst.run("SELECT id, at, at_offset FROM dbo.a WHERE at IS NOT NULL ORDER BY id")


def _filled(dst: pg8000.native.Connection) -> list[control.StoredSchemaChange]:
    return [c for c in control.list_schema_changes(dst, "default") if c.change == "column-filled"]


def test_the_gap_rows_get_the_source_values_once_and_nothing_else_is_touched(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    with _switched(emulated_source_url, target_url, tmp_path) as it:
        src, dst = it.src, it.dst
        gap = dst.run("SELECT id, note, at FROM dbo.a WHERE id IN (1, 2) ORDER BY id")
        assert gap == [[1, None, None], [2, None, None]]  # what the old instance carried: no value
        stamps = dst.run("SELECT id, _cdc_lsn, _cdc_applied_at FROM dbo.a ORDER BY id")

        standby = ColumnFill(it.config, it.engine, it.pipeline.tables, Observability(), is_writer=lambda: False)
        assert standby.check_once() == ["dbo.a"]  # a standby waits for the writer; nothing done
        assert _filled(dst) == []

        writer = ColumnFill(it.config, it.engine, it.pipeline.tables, Observability(), is_writer=lambda: True)
        assert writer.check_once() == []
        assert _notes(dst) == _notes(src)
        assert _instants(dst) == [
            [1, datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC), 120],
            [3, datetime(2026, 5, 6, 12, 8, 9, tzinfo=UTC), -300],
        ]
        # the metadata columns are untouched: not a change of the row (conflict detection sees nothing)
        assert dst.run("SELECT id, _cdc_lsn, _cdc_applied_at FROM dbo.a ORDER BY id") == stamps
        records = _filled(dst)  # one per added target column (``at``'s offset companion is one too)
        assert sorted(str(r.column_name) for r in records) == ["at", "at_offset", "note"]
        for record in records:
            assert (record.source_table, record.capture_instance, record.status) == (
                "dbo.a",
                "dbo_a_v2",
                "auto-applied",
            )
            assert "2 rows set from the source table (4 read; counted for at, at_offset, note together" in str(
                record.detail
            )

        # done once: the next look finds nothing to do, and a repeated fill (a crash before the record) sets nothing
        count = len(control.list_schema_changes(dst, "default"))
        assert writer.check_once() == []
        assert len(control.list_schema_changes(dst, "default")) == count
        again = it.fill_note()
        assert (again.read, again.updated, again.skipped) == (4, 0, 0)


def test_rows_the_stream_wrote_since_the_new_instance_started_are_left_to_it(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    with _switched(emulated_source_url, target_url, tmp_path) as it:
        # changes the pipeline has not applied yet: id 3 (written by the stream since the start) must not be set
        # from the source by the fill, id 1 (in the gap) is set to the value as read; the stream then converges
        it.src.run("UPDATE dbo.a SET note = 'later' WHERE id = 3")
        it.src.run("UPDATE dbo.a SET note = 'gap-later' WHERE id = 1")
        assert it.fill_note().updated == 2  # ids 1 and 2
        assert it.dst.run("SELECT id, note FROM dbo.a ORDER BY id") == [
            [1, "gap-later"],
            [2, "gap2"],
            [3, "new"],
            [4, None],
        ]
        _catch_up(it.config)
        assert _notes(it.dst)[:3] == _notes(it.src)[:3]
        assert it.dst.run("SELECT note FROM dbo.a WHERE id = 3") == [["later"]]


def test_soft_deleted_rows_are_left_as_they_are(emulated_source_url: str, target_url: str, tmp_path: Path) -> None:
    with _switched(emulated_source_url, target_url, tmp_path, defaults={"delete_mode": "soft"}) as it:
        # a row soft-deleted in the target while the source still has it: the fill brings no value into it
        it.dst.run("UPDATE dbo.a SET _cdc_deleted = true WHERE id = 2")
        assert it.fill_note().updated == 1
        assert it.dst.run("SELECT id, note FROM dbo.a WHERE id IN (1, 2) ORDER BY id") == [[1, "gap"], [2, None]]


def test_a_fill_stopped_between_pages_records_nothing_and_the_next_look_finishes_it(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline that closes does not wait for a long fill: it ends after the page in hand, unrecorded."""
    monkeypatch.setattr(column_fill, "PAGE_ROWS", 1)
    with _switched(emulated_source_url, target_url, tmp_path) as it:
        partial = ColumnFill(it.config, it.engine, it.pipeline.tables, Observability(), is_writer=lambda: True)
        monkeypatch.setattr(partial, "closing", lambda: True)
        partial.check_once()
        assert _filled(it.dst) == []
        assert it.dst.run("SELECT id, note FROM dbo.a WHERE id IN (1, 2) ORDER BY id") == [[1, "gap"], [2, None]]
        again = ColumnFill(it.config, it.engine, it.pipeline.tables, Observability(), is_writer=lambda: True)
        assert again.check_once() == []
        assert _notes(it.dst) == _notes(it.src)
        assert "1 rows set from the source table (4 read;" in str(_filled(it.dst)[0].detail)


def test_a_run_until_caught_up_fills_at_its_end(emulated_source_url: str, target_url: str, tmp_path: Path) -> None:
    on = {"fill_added_columns": True}
    with _switched(emulated_source_url, target_url, tmp_path, schema_evolution=on) as it:
        assert _notes(it.dst) == _notes(it.src)
        assert sorted(str(r.column_name) for r in _filled(it.dst)) == ["at", "at_offset", "note"]


def test_switched_off_nothing_is_filled_and_the_record_names_reconcile(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    off = {"fill_added_columns": False}
    with _switched(emulated_source_url, target_url, tmp_path, schema_evolution=off) as it:
        assert it.pipeline._fill_added_columns(until_caught_up=False) is None
        on = _config(tmp_path, emulated_source_url, target_url, schema_evolution={"fill_added_columns": True})
        assert Pipeline.from_config(on)._fill_added_columns(until_caught_up=True) is None  # fills at its end instead
        added = [c for c in control.list_schema_changes(it.dst, "default") if c.change == "add-column"]
        assert added
        assert all("reconcile --repair dbo.a" in str(c.detail) for c in added)
        assert it.dst.run("SELECT note FROM dbo.a WHERE id = 1") == [[None]]


class _Updater:
    """Updates random rows of dbo.a (``v`` and, once it exists, ``n``) in small transactions until stopped."""

    def __init__(self, url: str, ids: int) -> None:
        self._conn = connect(url)
        self._ids = ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="updater", daemon=True)
        self.with_n = threading.Event()
        self.errors: list[BaseException] = []
        self.written = 0

    def _run(self) -> None:
        rng = random.Random(7)
        try:
            while not self._stop.is_set():
                ids = [rng.randint(1, self._ids) for _ in range(5)]
                statement = "UPDATE dbo.a SET v = :v" + (", n = :n" if self.with_n.is_set() else "") + " WHERE id = :i"
                in_transaction(
                    self._conn,
                    *((statement, {"v": f"u{self.written}", "n": -self.written, "i": i}) for i in ids),
                )
                self.written += 1
        except BaseException as exc:  # the test's assertion names it
            self.errors.append(exc)

    def __enter__(self) -> _Updater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._conn.close()


def test_a_fill_of_many_pages_under_concurrent_updates_leaves_the_table_exact(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row existed before the ALTER and got a per-row value the target cannot know (a volatile default):
    the fill sets all of them, in many pages, while the application keeps updating random rows (the new column
    too, once the new instance captures it). Afterwards every row is exact and reconcile finds nothing."""
    monkeypatch.setattr(column_fill, "PAGE_ROWS", 500)
    src, dst = connect(emulated_source_url), connect(target_url)
    two_cdc_tables(src)
    rows = 20_000
    src.run("INSERT INTO dbo.a SELECT i, 'a' || i FROM generate_series(2, :n) AS i", n=rows)
    config = _config(tmp_path, emulated_source_url, target_url, schema_evolution={"fill_added_columns": True})
    query = "SELECT id, v, n FROM dbo.a ORDER BY id"
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: dst.run("SELECT count(*) FROM dbo.a") == [[rows]], timeout=120, what="dbo.a replicated")
            with _Updater(emulated_source_url, rows) as updater:
                wait_for(lambda: updater.written >= 20, what="updates flowing before the DDL")
                retrying(lambda: src.run("ALTER TABLE dbo.a ADD COLUMN n int DEFAULT (random() * 1000000)::int"))
                updater.with_n.set()
                enable_instance(src, "a", "dbo_a_v2")
                wait_for(lambda: running.failures or bool(_filled(dst)), timeout=120, what="the added column filled")
                assert not running.failures, running.failures
                flowing = updater.written
                wait_for(lambda: updater.written >= flowing + 20, what="updates flowing after the fill")
            assert not updater.errors, updater.errors
            assert running.pipeline.wait_caught_up(60), "the pipeline did not catch up with the source"
            assert dst.run(query) == src.run(query)
        (record,) = _filled(dst)
        assert f"({rows} read;" in str(record.detail)
        assert dst.run("SELECT count(*) FROM dbo.a WHERE n IS NULL") == [[0]]
        (report,) = reconcile(config, ["dbo.a"], Settings(settle_seconds=0))
        assert report.status == "consistent", report
        assert dst.run("SELECT count(*) FROM mssql2pg.target_conflicts") == [[0]]
    finally:
        src.close()
        dst.close()
