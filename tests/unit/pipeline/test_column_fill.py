"""When the added-column fill (``pipeline/column_fill.py``) acts and when it waits: decisions over a control
state given to it, no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.model import SourceColumn
from mssql2pg.observability import Observability
from mssql2pg.pipeline import column_fill
from mssql2pg.pipeline.column_fill import ColumnFill
from mssql2pg.pipeline.plan import ControlState
from mssql2pg.positions import Lsn
from mssql2pg.sink import TableOptions, build_target_table, statements
from mssql2pg.sink.schema import TargetTable
from tests.fixtures.target import capture_instance, lsn

CONFIG = Config.model_validate(
    {"source": {"url": "mssql://u@h/d"}, "target": {"url": "postgresql://u@h/d"}, "tables": ["dbo.t"]}
)


def _table(start: Lsn, delete_mode: str = "hard") -> TargetTable:
    ci = capture_instance(
        "dbo.t",
        [SourceColumn("id", 1, "int", nullable=False), SourceColumn("note", 2, "varchar", max_length=10)],
        ["id"],
        name="dbo_t_v2",
    )
    return build_target_table(dataclasses.replace(ci, start_lsn=start), TableOptions(delete_mode=delete_mode))  # type: ignore[arg-type]


def _added(column: str = "note") -> control.StoredSchemaChange:
    return control.StoredSchemaChange(
        1,
        "default",
        datetime.now(UTC),
        "dbo.t",
        "dbo_t_v2",
        "add-column",
        column,
        None,
        "varchar(10)",
        "auto-applied",
        None,
        None,
        None,
    )


@pytest.fixture
def fills(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    done: list[str] = []
    monkeypatch.setattr(ColumnFill, "_fill_table", lambda self, table, ci, changes: done.append(str(table.source)))
    return done


@pytest.mark.parametrize(
    ("position", "acts"),
    [(Lsn.NULL, False), (lsn(4), False), (lsn(5).decrement(), True), (lsn(9), True)],
)
def test_it_waits_until_the_checkpoint_passed_where_the_new_instance_starts(
    monkeypatch: pytest.MonkeyPatch, fills: list[str], position: Lsn, acts: bool
) -> None:
    table = _table(start=lsn(5))
    monkeypatch.setattr(ColumnFill, "_pending", lambda self: {table: [_added()]})
    monkeypatch.setattr(column_fill, "control_state", lambda config: ControlState({}, {}, position))
    filler = ColumnFill(CONFIG, None, [table], Observability(), is_writer=lambda: True)  # type: ignore[arg-type]
    assert filler.check_once() == ([] if acts else ["dbo.t"])
    assert fills == (["dbo.t"] if acts else [])


def test_a_table_of_its_own_position_is_judged_by_it(monkeypatch: pytest.MonkeyPatch, fills: list[str]) -> None:
    table = _table(start=lsn(5))
    monkeypatch.setattr(ColumnFill, "_pending", lambda self: {table: [_added()]})
    state = ControlState({}, {"dbo.t": lsn(3)}, lsn(9))  # resynced: behind the group's checkpoint
    monkeypatch.setattr(column_fill, "control_state", lambda config: state)
    filler = ColumnFill(CONFIG, None, [table], Observability(), is_writer=lambda: True)  # type: ignore[arg-type]
    assert filler.check_once() == ["dbo.t"]
    assert fills == []


def test_an_instance_not_started_yet_is_waited_for(monkeypatch: pytest.MonkeyPatch, fills: list[str]) -> None:
    table = _table(start=Lsn.NULL)
    monkeypatch.setattr(ColumnFill, "_pending", lambda self: {table: [_added()]})
    monkeypatch.setattr(column_fill, "control_state", lambda config: ControlState({}, {}, lsn(9)))
    filler = ColumnFill(CONFIG, None, [table], Observability(), is_writer=lambda: True)  # type: ignore[arg-type]
    assert filler.check_once() == ["dbo.t"]
    assert fills == []


def test_nothing_pending_ends_the_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ColumnFill, "_pending", lambda self: {})
    filler = ColumnFill(CONFIG, None, [], Observability(), is_writer=lambda: False)  # type: ignore[arg-type]
    assert filler.tick() is True


def test_a_failed_look_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def away(self: ColumnFill) -> None:
        raise ConnectionRefusedError("target away")

    monkeypatch.setattr(ColumnFill, "_pending", away)
    filler = ColumnFill(CONFIG, None, [], Observability(), is_writer=lambda: True)  # type: ignore[arg-type]
    assert filler.tick() is False


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_the_fill_statement_sets_only_rows_below_the_start_and_only_where_a_value_differs(mode: str) -> None:
    table = _table(start=lsn(5), delete_mode=mode)
    note = [c for c in table.columns if c.name == "note"]
    text = statements.fill_columns(table, note)
    assert text.startswith('UPDATE "dbo"."t" AS t SET "note" = f."note" FROM "mssql2pg_fill" AS f')
    assert 't."id" = f."id"' in text
    assert 't."_cdc_lsn" < :start' in text
    assert 't."note" IS DISTINCT FROM f."note"' in text
    assert '"_cdc_lsn" =' not in text  # the row's stamp stays: no change of the row
    assert ('NOT t."_cdc_deleted"' in text) == (mode == "soft")
