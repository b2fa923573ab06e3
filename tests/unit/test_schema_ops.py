"""``mssql2pg schema approve``'s re-check (docs/schema-evolution.md): what keeps a reviewed change from being
done, decided from the target's columns and the table as the source's capture instances describe it now."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from mssql2pg.cli.schema import _types
from mssql2pg.control import StoredSchemaChange
from mssql2pg.model import SourceColumn
from mssql2pg.schema_ops import still_differs
from mssql2pg.sink import build_target_table
from tests.fixtures.target import capture_instance

C = build_target_table(
    capture_instance(
        "dbo.c",
        [
            SourceColumn("id", 1, "int", nullable=False),
            SourceColumn("s", 2, "varchar", max_length=30),
            SourceColumn("gone", 3, "int", dropped=True),
        ],
        key=["id"],
    )
)


def change(kind: str, column: str, ddl: str = "ALTER ...") -> StoredSchemaChange:
    return StoredSchemaChange(
        7, "default", datetime.now(UTC), "dbo.c", "dbo_c", kind, column, None, None, "pending-review", None, ddl, None
    )


def test_a_type_change_is_refused_while_the_migrated_column_cannot_hold_the_source_type() -> None:
    """A target migrated narrower than the source (varchar(5) for varchar(30)) would be widened by the next
    start, but the operator asked to approve it as it is: it cannot hold the source's values yet."""
    assert still_differs(change("type-change", "s"), C, {"id": "integer", "s": "character varying(5)"}) == [
        "s is character varying(5), which cannot hold varchar(30)"
    ]
    assert still_differs(change("type-change", "s"), C, {"id": "integer", "s": "character varying(30)"}) == []
    assert still_differs(change("type-change", "s"), C, {"id": "integer", "s": "text"}) == []
    assert still_differs(change("add-column", "s"), C, {"id": "integer"}) == ["column s is missing"]


def test_a_dropped_column_is_done_once_dropped_or_kept_on_purpose() -> None:
    dropped = change("drop-column", "gone", 'ALTER TABLE "dbo"."c" DROP COLUMN "gone"')
    [problem] = still_differs(dropped, C, {"id": "integer", "s": "varchar(30)", "gone": "integer"})
    assert "column gone is still in the target table" in problem
    assert 'ALTER TABLE "dbo"."c" DROP COLUMN "gone"' in problem
    assert "mssql2pg schema approve 7 --keep-column" in problem
    assert still_differs(dropped, C, {"id": "integer", "s": "varchar(30)", "gone": "integer"}, keep_column=True) == []
    # dropped from the target while a capture instance still captures it: the pipeline still writes the column
    [early] = still_differs(dropped, C, {"id": "integer", "s": "varchar(30)"})
    assert "capture instance dbo_c still captures column gone" in early
    assert "add the column back" in early
    retired = build_target_table(
        capture_instance(
            "dbo.c",
            [SourceColumn("id", 1, "int", nullable=False), SourceColumn("s", 2, "varchar", max_length=30)],
            key=["id"],
        )
    )
    assert still_differs(dropped, retired, {"id": "integer", "s": "varchar(30)"}) == []


def test_schema_list_shows_a_dropped_column_as_dropped() -> None:
    assert _types(replace(change("drop-column", "gone"), old_type="integer")) == "integer -> (dropped)"
    assert _types(replace(change("type-change", "n"), old_type="integer", new_type="bigint")) == "integer -> bigint"
