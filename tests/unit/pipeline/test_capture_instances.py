"""When the pipeline enables a new capture instance by itself (``schema_evolution.manage_capture_instances``,
issue 12 point 8), with which captured columns, and under which name: pure decisions, no database."""

from __future__ import annotations

from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.pipeline.capture_instances import NewInstance, new_instance_name, plan_new_instance
from mssql2pg.positions import Lsn


def _ci(*columns: tuple[str, int, bool]) -> CaptureInstance:
    """An instance of dbo.t capturing ``(name, column_id, dropped)``."""
    return CaptureInstance(
        name="dbo_t",
        source=TableId("dbo", "t"),
        start_lsn=Lsn.from_bytes(bytes(9) + b"\x01"),
        columns=tuple(
            SourceColumn(name=n, ordinal=i, sql_type="int", column_id=cid, dropped=dropped)
            for i, (n, cid, dropped) in enumerate(columns, start=1)
        ),
        key_columns=("id",),
        object_id=77,
    )


def test_an_unchanged_table_needs_nothing() -> None:
    assert plan_new_instance(_ci(("id", 1, False), ("v", 2, False)), {1: "id", 2: "v"}, ddl_seen=False) is None


def test_a_column_added_after_an_all_columns_instance_needs_one_capturing_every_column() -> None:
    plan = plan_new_instance(_ci(("id", 1, False), ("v", 2, False)), {1: "id", 2: "v", 3: "note"}, ddl_seen=True)
    assert plan == NewInstance(added=("note",), dropped=(), captured_column_list=None)


def test_an_uncaptured_trailing_column_without_ddl_history_was_left_out_on_purpose() -> None:
    """No column change was captured since the instance was created: the column was there already and the
    instance was enabled without it (an explicit @captured_column_list)."""
    assert plan_new_instance(_ci(("id", 1, False), ("v", 2, False)), {1: "id", 2: "v", 3: "x"}, ddl_seen=False) is None


def test_an_explicit_list_is_kept_without_the_dropped_column_and_an_added_column_stays_out() -> None:
    """Column 2 (secret) was never captured though older than captured ones: the instance had an explicit list.
    Its replacement keeps that list minus the dropped column; the added column 5 stays uncaptured."""
    ci = _ci(("id", 1, False), ("v", 3, False), ("gone", 4, True))
    plan = plan_new_instance(ci, {1: "id", 2: "secret", 3: "v", 5: "added"}, ddl_seen=True)
    assert plan == NewInstance(added=(), dropped=("gone",), captured_column_list=("id", "v"))
    assert plan_new_instance(_ci(("id", 1, False), ("v", 3, False)), {1: "id", 2: "s", 3: "v", 5: "a"}, True) is None


def test_a_dropped_captured_column_needs_a_new_instance() -> None:
    plan = plan_new_instance(_ci(("id", 1, False), ("v", 2, True)), {1: "id"}, ddl_seen=True)
    assert plan == NewInstance(added=(), dropped=("v",), captured_column_list=None)


def test_generated_names_follow_the_version_and_avoid_every_existing_instance() -> None:
    assert new_instance_name("dbo_orders", {"dbo_orders"}) == "dbo_orders_v2"
    assert new_instance_name("dbo_orders_v2", {"dbo_orders_v2"}) == "dbo_orders_v3"
    assert new_instance_name("dbo_orders", {"dbo_orders", "dbo_orders_v2", "dbo_orders_v3"}) == "dbo_orders_v4"
    long = "x" * 80
    name = new_instance_name(long, {long})
    assert name.endswith("_v2")
    assert len(name) <= 50
