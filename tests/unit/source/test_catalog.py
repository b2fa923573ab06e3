"""Capture-instance discovery: type facts, key columns, table matching, two instances per table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mssql2pg.errors import SourceError
from mssql2pg.model import CaptureInstance, TableId
from mssql2pg.positions import Lsn
from mssql2pg.source.catalog import build_capture_instances, instance_segments, select_instances, source_column
from tests.unit.source.fakes import instance, lsn


def _col(name: str, ordinal: int, column_type: str, **kw: Any) -> dict[str, Any]:
    row = {
        "object_id": 7,
        "column_name": name,
        "column_id": ordinal + 10,
        "column_ordinal": ordinal,
        "column_type": column_type,
        "type_name": column_type,
        "max_length": None,
        "precision": 0,
        "scale": 0,
        "is_nullable": True,
    }
    row.update(kw)
    return row


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (_col("n", 1, "nvarchar", max_length=100), 50),
        (_col("n", 1, "nchar", max_length=20), 10),
        (_col("n", 1, "nvarchar", max_length=-1), -1),
        (_col("v", 1, "varchar", max_length=100), 100),
        (_col("b", 1, "varbinary", max_length=-1), -1),
        (_col("b", 1, "binary", max_length=16), 16),
        (_col("i", 1, "int", max_length=4), None),
        (_col("x", 1, "xml", max_length=-1), None),
    ],
)
def test_max_length_is_in_characters_for_character_types(row: dict[str, Any], expected: int | None) -> None:
    assert source_column(row).max_length == expected


def test_type_facts_and_nullability_come_from_the_source_column() -> None:
    col = source_column(
        _col("Amount", 3, "DECIMAL", type_name="decimal", precision=38, scale=9, is_nullable=False, column_id=4)
    )
    assert (col.name, col.ordinal, col.sql_type, col.precision, col.scale, col.nullable, col.column_id) == (
        "Amount",
        3,
        "decimal",
        38,
        9,
        False,
        4,
    )


def test_alias_type_falls_back_to_the_base_type_we_know() -> None:
    assert source_column(_col("p", 1, "PhoneNumber", type_name="varchar", max_length=20)).sql_type == "varchar"
    assert source_column(_col("p", 1, "odd", type_name=None)).sql_type == "odd"


def test_dropped_source_column_is_still_read_and_nullable() -> None:
    col = source_column(
        _col("gone", 2, "int", type_name=None, max_length=None, precision=None, scale=None, is_nullable=None)
    )
    assert (col.sql_type, col.nullable, col.precision) == ("int", True, None)


def test_build_capture_instances_joins_columns_and_keys_by_object_id() -> None:
    created = dt.datetime(2024, 1, 1)
    instances = build_capture_instances(
        [
            {
                "source_schema": "sales",
                "source_table": "Order Lines",
                "capture_instance": "sales_Order Lines",
                "object_id": 7,
                "source_object_id": 70,
                "start_lsn": lsn(33).raw,
                "supports_net_changes": 1,
                "create_date": created,
            },
            {
                "source_schema": "dbo",
                "source_table": "t",
                "capture_instance": "dbo_t",
                "object_id": 8,
                "source_object_id": 80,
                "start_lsn": None,
                "supports_net_changes": 0,
                "create_date": created,
            },
        ],
        [_col("b", 2, "int"), _col("a", 1, "int"), _col("z", 1, "bit", object_id=8)],
        [
            {"object_id": 7, "column_name": "a", "index_ordinal": 1, "column_id": 11},
            {"object_id": 7, "column_name": "b", "index_ordinal": 2, "column_id": 12},
        ],
    )
    first, second = instances
    assert first.source == TableId("sales", "Order Lines")
    assert first.column_names == ("a", "b")
    assert first.key_columns == ("a", "b")
    assert (first.start_lsn, first.object_id, first.supports_net_changes) == (lsn(33), 7, True)
    assert second.start_lsn == Lsn.NULL
    assert second.key_columns == ()
    assert second.column_names == ("z",)


def test_select_instances_matches_exactly_then_case_insensitively() -> None:
    orders = instance("dbo_Orders", "dbo.Orders")
    found = select_instances([orders], [TableId("dbo", "Orders"), TableId("DBO", "orders")])
    assert found == {TableId("dbo", "Orders"): (orders,), TableId("DBO", "orders"): (orders,)}


def test_missing_capture_instance_names_the_table_and_the_command_to_run() -> None:
    with pytest.raises(SourceError) as info:
        select_instances([instance("dbo_a", "dbo.a")], [TableId("dbo", "a"), TableId("dbo", "O'Brien")])
    err = info.value
    assert "dbo.O'Brien" in str(err)
    assert err.hint is not None
    assert "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'O''Brien', @role_name = NULL;" in (
        err.hint
    )


def test_two_instances_are_returned_oldest_first() -> None:
    old = instance("dbo_t", "dbo.t", start=10)
    new = instance("dbo_t_v2", "dbo.t", start=90)
    pending = CaptureInstance("dbo_t_v3", TableId("dbo", "t"), Lsn.NULL, (), ())
    assert select_instances([pending, new, old], [TableId("dbo", "t")])[TableId("dbo", "t")] == (old, new, pending)


def _spans(instances: list[CaptureInstance], after: int, to: int) -> list[tuple[str, int, int]]:
    return [
        (s.instance.name, s.after.to_int(), s.to.to_int()) for s in instance_segments(instances, lsn(after), lsn(to))
    ]


def test_segments_old_instance_until_new_start_then_new() -> None:
    old = instance("old", "dbo.t", start=10)
    new = instance("new", "dbo.t", start=50)
    assert _spans([old, new], 20, 80) == [("old", 20, 49), ("new", 49, 80)]
    assert _spans([old, new], 20, 40) == [("old", 20, 40)]  # the new one starts beyond this window
    assert _spans([old, new], 60, 80) == [("new", 60, 80)]  # the old one is finished for us
    assert _spans([old], 20, 80) == [("old", 20, 80)]


def test_segments_ignore_an_instance_capture_has_not_established() -> None:
    old = instance("old", "dbo.t", start=10)
    pending = CaptureInstance("pending", TableId("dbo", "t"), Lsn.NULL, (), ())
    assert _spans([old, pending], 20, 80) == [("old", 20, 80)]
    assert _spans([pending], 20, 80) == [("pending", 20, 80)]
