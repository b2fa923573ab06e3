"""TargetTable construction and the type compatibility rule, without a database."""

from __future__ import annotations

import pytest

from mssql2pg.errors import ConfigError
from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.sink import TableOptions, build_target_table
from mssql2pg.sink.ddl import type_can_hold
from mssql2pg.sink.statements import apply_staged


def ci(*columns: SourceColumn, key: tuple[str, ...] = ("Id",)) -> CaptureInstance:
    return CaptureInstance("dbo_T", TableId("Sales", "Order Lines"), Lsn.ZERO, tuple(columns), key)


ID = SourceColumn("Id", 1, "int", nullable=False)


def test_default_names_are_lower_case_with_metadata_and_offset_companion() -> None:
    table = build_target_table(ci(ID, SourceColumn("At", 2, "datetimeoffset", scale=3)))
    assert (table.schema, table.name) == ("sales", "order lines")
    assert table.column_names == ("id", "at", "at_offset")
    assert table.key == ("id",)
    assert [n for n, _ in table.meta.definitions()] == [
        "_cdc_lsn",
        "_cdc_operation",
        "_cdc_commit_time",
        "_cdc_applied_at",
        "_cdc_deleted",
        "_cdc_stale",
    ]


def test_options_override_names_prefix_and_delete_mode() -> None:
    table = build_target_table(
        ci(ID),
        TableOptions(
            target_schema="dw", target_name="lines", naming="preserve", delete_mode="soft", metadata_prefix="m_"
        ),
    )
    assert (table.schema, table.name, table.column_names, table.delete_mode) == ("dw", "lines", ("Id",), "soft")
    assert table.meta.lsn == "m_lsn"


def test_offset_companion_collision_is_reported() -> None:
    with pytest.raises(ConfigError, match="'at_offset'"):
        build_target_table(ci(ID, SourceColumn("At", 2, "datetimeoffset"), SourceColumn("At_Offset", 3, "int")))


def test_metadata_collision_is_reported() -> None:
    with pytest.raises(ConfigError, match="metadata"):
        build_target_table(ci(ID, SourceColumn("_cdc_lsn", 2, "int")))


def test_key_column_not_captured_is_reported() -> None:
    with pytest.raises(ConfigError, match="not captured"):
        build_target_table(ci(SourceColumn("x", 1, "int"), key=("Id",)))


def test_too_long_target_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="63-byte"):
        build_target_table(ci(ID), TableOptions(target_name="x" * 64))


@pytest.mark.parametrize(
    ("existing", "wanted", "ok"),
    [
        ("integer", "smallint", True),
        ("smallint", "integer", False),
        ("text", "character varying(10)", True),
        ("character varying(20)", "varchar(10)", True),
        ("character varying(5)", "varchar(10)", False),
        ("numeric(20,4)", "numeric(19,4)", True),
        ("numeric(19,2)", "numeric(19,4)", False),
        ("numeric", "numeric(38,10)", True),
        ("timestamp(6) without time zone", "timestamp(3)", True),
        ("timestamp(0) without time zone", "timestamp(3)", False),
        ("timestamp with time zone", "timestamptz(6)", True),
        ("timestamp without time zone", "timestamptz(6)", False),
        ("double precision", "real", True),
        ("text", "bytea", False),
        ("uuid", "uuid", True),
    ],
)
def test_type_can_hold(existing: str, wanted: str, ok: bool) -> None:
    assert type_can_hold(existing, wanted) is ok


def test_apply_statement_quotes_every_identifier() -> None:
    table = build_target_table(ci(SourceColumn('I"d', 1, "int"), key=('I"d',)), TableOptions(naming="preserve"))
    text = apply_staged(table, 0)
    assert '"I""d"' in text
    assert '"Sales"."Order Lines"' in text
