"""One target table per source table, fed by each of its capture instances through an encoder of its own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mssql2pg.errors import ConfigError
from mssql2pg.model import SourceColumn, TableId
from mssql2pg.sink import TableOptions, build_target_table
from mssql2pg.sink.encoders import instance_encoder
from mssql2pg.sink.types import UnstorableValueError, codec_for
from tests.fixtures.target import capture_instance

ID = SourceColumn("Id", 1, "int", nullable=False)
NAME = SourceColumn("Name", 2, "nvarchar", max_length=20, nullable=False)
OLD = capture_instance("dbo.T", [ID, NAME, SourceColumn("Fax", 3, "varchar", max_length=10)], ["Id"], name="dbo_T")
NEW = capture_instance(
    "dbo.T",
    [
        ID,
        SourceColumn("Name", 2, "nvarchar", max_length=50, nullable=False),
        SourceColumn("Email", 3, "varchar", max_length=80),
    ],
    ["Id"],
    name="dbo_T_v2",
)


def test_one_capture_instance_feeds_its_table_directly() -> None:
    table = build_target_table(OLD)
    assert table.source == TableId("dbo", "T")
    assert table.capture_instance is OLD
    assert table.instances == (OLD,)
    encoder = table.encoder("dbo_T")
    assert encoder.direct
    assert encoder.key_positions == (0,)
    assert encoder.encode((1, "a", None)) == "1\ta\t\\N"


def test_columns_of_all_instances_oldest_order_first_newest_type_wins() -> None:
    table = build_target_table([OLD, NEW])
    assert table.column_names == ("id", "name", "fax", "email")
    types = {c.name: c.pg_type for c in table.columns}
    assert types["name"] == "varchar(50)"  # the newest instance's type
    nullable = {c.name: c.nullable for c in table.columns}
    # a column one instance does not capture receives NULL from it, whatever the source says
    assert nullable == {"id": False, "name": False, "fax": True, "email": True}
    assert table.capture_instance is NEW  # the instance the table follows (recorded in mssql2pg.table_state)
    assert table.instances == (OLD, NEW)


def test_each_instance_maps_its_columns_by_name_and_null_where_it_has_none() -> None:
    table = build_target_table([OLD, NEW])
    old, new = table.encoder("dbo_T"), table.encoder("dbo_T_v2")
    assert not old.direct
    assert not new.direct
    assert old.target_values((1, "a", "555")) == (1, "a", "555", None)
    assert new.target_values((2, "b", "b@x")) == (2, "b", None, "b@x")
    assert old.encode((1, "a", "555")) == "1\ta\t555\t\\N"
    assert new.encode((2, "b", "b@x")) == "2\tb\t\\N\tb@x"
    assert (old.key_positions, new.key_positions) == ((0,), (0,))


def test_an_instance_with_columns_the_target_lacks_leaves_them_out_by_name() -> None:
    target = build_target_table(NEW)
    encoder = instance_encoder(OLD, target.codecs)
    assert encoder.left_out == ("Fax",)
    assert encoder.target_values((1, "a", "555")) == (1, "a", None)


def test_an_unencodable_value_names_its_column() -> None:
    table = build_target_table([OLD, NEW])
    with pytest.raises(UnstorableValueError, match="Name"):
        table.encoder("dbo_T_v2").encode((1, "nul\x00", None))


def test_key_must_be_captured_by_every_instance() -> None:
    keyless = capture_instance("dbo.T", [NAME], ["Id"], name="dbo_T_names")
    with pytest.raises(ConfigError, match="dbo_T_names"):
        build_target_table([keyless, NEW])


def test_instances_of_two_tables_do_not_make_one_target() -> None:
    other = capture_instance("dbo.U", [ID], ["Id"])
    with pytest.raises(ValueError, match="one source table"):
        build_target_table([OLD, other])


def test_codec_of_another_shape_is_refused() -> None:
    stamped = capture_instance("dbo.T", [ID, SourceColumn("Name", 2, "datetimeoffset")], ["Id"], name="dbo_T_v3")
    with pytest.raises(ConfigError, match="Name"):
        build_target_table([OLD, stamped])


def test_with_and_without_instance_rebuild_with_the_same_options() -> None:
    options = TableOptions(target_schema="dw", naming="preserve", delete_mode="soft")
    table = build_target_table(OLD, options)
    both = table.with_instance(NEW)
    assert both.instances == (OLD, NEW)
    assert (both.schema, both.name, both.delete_mode) == ("dw", "T", "soft")
    assert both.column_names == ("Id", "Name", "Fax", "Email")
    assert both.without_instance("dbo_T").instances == (NEW,)
    replaced = both.with_instance(OLD)  # the same name again: replaced where it was
    assert replaced.instances == (OLD, NEW)
    with pytest.raises(KeyError, match="dbo_T_v9"):
        both.without_instance("dbo_T_v9")
    with pytest.raises(ValueError, match="last capture instance"):
        table.without_instance("dbo_T")


def test_unknown_instance_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="dbo_T_v2"):
        build_target_table(OLD).encoder("dbo_T_v2")


def test_datetimeoffset_covers_two_target_columns_in_every_instance() -> None:
    at = SourceColumn("At", 2, "datetimeoffset", scale=0)
    first = capture_instance("dbo.E", [ID, at], ["Id"], name="dbo_E")
    second = capture_instance("dbo.E", [ID], ["Id"], name="dbo_E_v2")
    table = build_target_table([first, second])
    assert table.column_names == ("id", "at", "at_offset")
    value = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert table.encoder("dbo_E").encode((1, value)) == f"1\t{codec_for(at, table.source).encode(value)}"
    assert table.encoder("dbo_E_v2").encode((1,)) == "1\t\\N\t\\N"
