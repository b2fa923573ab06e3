"""Names that cannot be mapped to a target table pause their table (issue 15 point 2): what
:func:`mssql2pg.pipeline.plan.usable_selections` decides for each kind, without any database.

SQL Server names may be 128 characters; PostgreSQL holds 63 bytes and would silently truncate a longer name
(two long columns could even become one), so such a table is refused with the reason and what to change. The
emulator cannot hold such names (it is PostgreSQL), so they are described here as SQL Server reports them.
"""

from __future__ import annotations

import pytest

from mssql2pg.config.tables import TableSelection
from mssql2pg.model import SourceColumn, TableId
from mssql2pg.pipeline.plan import usable_selections
from mssql2pg.sink.errors import UnmappableTableError
from mssql2pg.source.errors import TableShapeError
from tests.fixtures.target import capture_instance

LONG_128 = "Ä" + "x" * 127  # SQL Server's sysname limit, 129 bytes in UTF-8


def _selection(table: TableId, naming: str = "lower", target: TableId | None = None) -> TableSelection:
    lowered = TableId(table.schema.lower(), table.name.lower()) if naming == "lower" else table
    return TableSelection(table, target or lowered, "hard", naming, "default", str(table))  # type: ignore[arg-type]


CASES = {
    "case-only difference": (
        [SourceColumn("id", 1, "int", nullable=False), SourceColumn("Code", 2, "int"), SourceColumn("code", 3, "int")],
        "both become target column 'code'",
        "naming: preserve",
    ),
    "128-character column": (
        [SourceColumn("id", 1, "int", nullable=False), SourceColumn(LONG_128, 2, "int")],
        "63-byte limit",
        "shorter target name",
    ),
    "metadata column": (
        [SourceColumn("id", 1, "int", nullable=False), SourceColumn("_cdc_lsn", 2, "int")],
        "collides with the metadata column",
        "metadata_prefix",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_an_unmappable_table_is_paused_with_reason_and_remediation_and_the_others_stay(case: str) -> None:
    columns, reason, change = CASES[case]
    bad = TableId("dbo", "Bad; DROP TABLE x; --")
    good = TableId("dbo", "good")
    instances = {
        bad: (capture_instance(bad, columns, ["id"], name="dbo_bad"),),
        good: (capture_instance(good, [SourceColumn("id", 1, "int", nullable=False)], ["id"]),),
    }
    usable, faults = usable_selections([_selection(bad), _selection(good)], instances)
    assert [s.source for s in usable] == [good]
    [fault] = faults
    assert isinstance(fault, UnmappableTableError)
    assert (fault.table, fault.state) == (bad, "paused")
    assert reason in str(fault)
    assert change in fault.remediation
    assert f"mssql2pg resync {bad}" in fault.remediation


def test_a_128_character_table_name_is_paused_unless_mapped_to_a_shorter_target() -> None:
    long_table = TableId("dbo", LONG_128)
    ci = capture_instance(long_table, [SourceColumn("id", 1, "int", nullable=False)], ["id"], name="dbo_long")
    _usable, [fault] = usable_selections([_selection(long_table)], {long_table: (ci,)})
    assert "63-byte limit" in str(fault)
    usable, faults = usable_selections([_selection(long_table, target=TableId("dbo", "long_one"))], {long_table: (ci,)})
    assert (len(usable), faults) == (1, [])


def test_names_that_differ_only_in_case_map_under_preserve() -> None:
    table = TableId("dbo", "Codes")
    columns = [
        SourceColumn("id", 1, "int", nullable=False),
        SourceColumn("Code", 2, "int"),
        SourceColumn("code", 3, "int"),
    ]
    ci = capture_instance(table, columns, ["id"])
    usable, faults = usable_selections([_selection(table, naming="preserve")], {table: (ci,)})
    assert (len(usable), faults) == (1, [])


def test_a_table_without_a_key_is_still_a_shape_fault() -> None:
    table = TableId("dbo", "heap")
    ci = capture_instance(table, [SourceColumn("v", 1, "int")], [])
    _usable, [fault] = usable_selections([_selection(table)], {table: (ci,)})
    assert isinstance(fault, TableShapeError)


def test_tables_whose_names_differ_only_in_case_are_both_paused_and_the_others_stay() -> None:
    upper, lower, other = TableId("dbo", "Items"), TableId("dbo", "items"), TableId("dbo", "other")
    key = [SourceColumn("id", 1, "int", nullable=False)]
    instances = {t: (capture_instance(t, key, ["id"], name=f"ci_{i}"),) for i, t in enumerate((upper, lower, other))}
    usable, faults = usable_selections([_selection(upper), _selection(lower), _selection(other)], instances)
    assert [s.source for s in usable] == [other]
    assert [f.table for f in faults] == [upper, lower]
    for fault in faults:
        assert "dbo.Items, dbo.items would all be replicated into dbo.items" in str(fault)
        assert "naming: preserve" in fault.remediation
