"""What a source schema change means for the target table (sink/evolution.py), without a database."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from mssql2pg.model import SourceColumn
from mssql2pg.sink import build_target_table
from mssql2pg.sink.evolution import column_default, pg_default, plan_evolution
from mssql2pg.sink.types import codec_for
from tests.fixtures.target import capture_instance

ID = SourceColumn("Id", 1, "int", nullable=False)


def _table(*columns: SourceColumn):  # type: ignore[no-untyped-def]
    return build_target_table(capture_instance("dbo.T", [ID, *columns], ["Id"], name="dbo_T_v2"))


def _existing(**columns: str) -> dict[str, tuple[str, bool]]:
    return {"id": ("integer", True), **{name: (pg_type, False) for name, pg_type in columns.items()}}


def test_nothing_changed_needs_nothing() -> None:
    table = _table(SourceColumn("N", 2, "int"))
    assert plan_evolution(table, _existing(n="integer")).changes == []


def test_an_added_column_is_added_nullable_with_its_mapped_type() -> None:
    evolution = plan_evolution(_table(SourceColumn("Note", 2, "nvarchar", max_length=10)), _existing())
    (change,) = evolution.changes
    assert (change.change, change.status, change.column_name, change.new_type) == (
        "add-column",
        "auto-applied",
        "note",
        "varchar(10)",
    )
    assert evolution.ddl == ['ALTER TABLE "dbo"."t" ADD COLUMN IF NOT EXISTS "note" varchar(10)']
    assert change.ddl == evolution.ddl[0]
    assert evolution.needs_review == []


def test_a_dropped_column_is_kept_for_review_and_loses_its_not_null() -> None:
    gone = SourceColumn("Gone", 2, "int", nullable=True, dropped=True)
    evolution = plan_evolution(_table(gone), {"id": ("integer", True), "gone": ("integer", True)})
    (change,) = evolution.changes
    assert (change.change, change.status, change.old_type) == ("drop-column", "pending-review", "integer")
    assert change.ddl == 'ALTER TABLE "dbo"."t" DROP COLUMN "gone"'
    assert evolution.ddl == ['ALTER TABLE "dbo"."t" ALTER COLUMN "gone" DROP NOT NULL']
    assert evolution.needs_review == []  # the table goes on


@pytest.mark.parametrize(
    ("column", "have", "want"),
    [
        (SourceColumn("C", 2, "bigint"), "integer", "bigint"),
        (SourceColumn("C", 2, "varchar", max_length=40), "character varying(20)", "varchar(40)"),
        (SourceColumn("C", 2, "varchar", max_length=-1), "character varying(20)", "text"),
        (SourceColumn("C", 2, "decimal", precision=12, scale=4), "numeric(10,2)", "numeric(12,4)"),
        (SourceColumn("C", 2, "datetime2", scale=7), "timestamp(3) without time zone", "timestamp(6)"),
        (SourceColumn("C", 2, "float"), "real", "double precision"),
    ],
)
def test_safe_widenings_are_applied(column: SourceColumn, have: str, want: str) -> None:
    evolution = plan_evolution(_table(column), _existing(c=have))
    (change,) = evolution.changes
    assert (change.change, change.status, change.old_type, change.new_type) == (
        "type-change",
        "auto-applied",
        have,
        want,
    )
    assert evolution.ddl == [f'ALTER TABLE "dbo"."t" ALTER COLUMN "c" TYPE {want}']


def test_a_narrower_source_type_the_target_holds_needs_no_ddl() -> None:
    evolution = plan_evolution(_table(SourceColumn("C", 2, "int")), _existing(c="bigint"))
    (change,) = evolution.changes
    assert (change.status, change.ddl, evolution.ddl) == ("auto-applied", None, [])


@pytest.mark.parametrize(
    ("column", "have"),
    [
        (SourceColumn("C", 2, "real"), "numeric(5,2)"),
        (SourceColumn("C", 2, "varchar", max_length=10), "integer"),
        (SourceColumn("C", 2, "int"), "character varying(10)"),
        (SourceColumn("C", 2, "datetimeoffset", scale=7), "timestamp(3) without time zone"),
    ],
)
def test_other_type_changes_wait_for_review_with_a_recommended_migration(column: SourceColumn, have: str) -> None:
    evolution = plan_evolution(_table(column), _existing(c=have))
    (change,) = [c for c in evolution.changes if c.column_name == "c"]
    assert change.status == "pending-review"
    assert evolution.needs_review == [change]
    assert change.ddl is not None
    assert " USING " in change.ddl
    assert not [d for d in evolution.ddl if '"c" TYPE' in d]  # nothing run for it


def test_a_column_dropped_before_the_target_had_it_needs_nothing() -> None:
    gone = dataclasses.replace(SourceColumn("Gone", 2, "int"), dropped=True)
    assert plan_evolution(_table(gone), _existing()).changes == []


@pytest.mark.parametrize(
    ("definition", "pg_type", "expected"),
    [
        ("((0))", "integer", "0"),
        ("((-1.50))", "numeric(5,2)", "-1.50"),
        ("('x')", "varchar(10)", "'x'"),
        ("(N'it''s')", "varchar(10)", "'it''s'"),
        ("((1))", "boolean", "true"),
        ("((0))", "boolean", "false"),
        ("(getdate())", "timestamp(3)", None),
        ("(newid())", "uuid", None),
        ("((1)+(2))", "integer", None),
        (None, "integer", None),
    ],
)
def test_constant_source_defaults_become_postgresql_literals(
    definition: str | None, pg_type: str, expected: str | None
) -> None:
    assert pg_default(definition, pg_type) == expected


def test_an_added_column_keeps_its_default_and_fills_existing_rows_only_when_not_null() -> None:
    required = SourceColumn("Note", 2, "varchar", max_length=10, nullable=False, default="('dflt')")
    evolution = plan_evolution(_table(required), _existing())
    assert evolution.ddl == ['ALTER TABLE "dbo"."t" ADD COLUMN IF NOT EXISTS "note" varchar(10) DEFAULT \'dflt\'']
    optional = dataclasses.replace(required, nullable=True)
    evolution = plan_evolution(_table(optional), _existing())
    assert evolution.ddl == [
        'ALTER TABLE "dbo"."t" ADD COLUMN IF NOT EXISTS "note" varchar(10)',
        'ALTER TABLE "dbo"."t" ALTER COLUMN "note" SET DEFAULT \'dflt\'',
    ]


def test_a_dropped_decimal_column_still_encodes_the_values_changes_from_before_the_drop_carry() -> None:
    """Its precision and scale went with the column (sys.columns), but change rows read again after a re-plan
    still hold values of it: none may become a dead letter or be rounded."""
    gone = SourceColumn("Amount", 2, "decimal", precision=None, scale=None, nullable=True, dropped=True)
    codec = codec_for(gone)
    assert codec.target.pg_type == "numeric"
    assert codec.encode(Decimal("12345678901234567890.123456789")) == "12345678901234567890.123456789"


@pytest.mark.parametrize(
    ("definition", "pg_type", "expected"),
    [
        ("(getdate())", "timestamp(3)", "LOCALTIMESTAMP"),
        ("(GETDATE())", "timestamp(6)", "LOCALTIMESTAMP"),
        ("(sysdatetime())", "timestamp(6)", "LOCALTIMESTAMP"),
        ("(CURRENT_TIMESTAMP)", "timestamp(3)", "LOCALTIMESTAMP"),
        ("(getdate())", "date", "LOCALTIMESTAMP"),
        ("(getutcdate())", "timestamp(3)", "(now() AT TIME ZONE 'UTC')"),
        ("(sysutcdatetime())", "timestamp(6)", "(now() AT TIME ZONE 'UTC')"),
        ("(sysdatetimeoffset())", "timestamptz(6)", "now()"),
        ("(newid())", "uuid", "gen_random_uuid()"),
        ("((0))", "integer", "0"),  # constants as before
        ("('x')", "varchar(10)", "'x'"),
    ],
)
def test_known_source_functions_become_their_postgresql_equivalent(
    definition: str, pg_type: str, expected: str
) -> None:
    assert column_default(definition, pg_type) == (expected, None)


@pytest.mark.parametrize(
    ("definition", "pg_type", "reason"),
    [
        ("(newsequentialid())", "uuid", "no PostgreSQL equivalent"),
        ("((1)+(2))", "integer", "no PostgreSQL equivalent"),
        ("([dbo].[next_id]())", "integer", "no PostgreSQL equivalent"),
        ("(getdate())", "integer", "getdate() has no equivalent for a integer column"),
        ("(newid())", "varchar(36)", "newid() has no equivalent for a varchar(36) column"),
        ("(0x00)", "bytea", "no PostgreSQL equivalent"),
    ],
)
def test_anything_else_is_not_carried_and_says_why(definition: str, pg_type: str, reason: str) -> None:
    carried, why = column_default(definition, pg_type)
    assert carried is None
    assert why is not None
    assert reason in why
    assert column_default(None, "integer") == (None, None)


def test_a_non_constant_default_is_kept_but_never_fills_existing_rows() -> None:
    """SQL Server filled the existing rows with its own clock at the ALTER; the target's clock at the evolution
    would be another value: they stay NULL until the pipeline sets them from the source table after the switch
    (pipeline/column_fill.py), and the record says so."""
    created = SourceColumn("Created", 2, "datetime2", scale=6, nullable=False, default="(sysdatetime())")
    evolution = plan_evolution(_table(created), _existing())
    assert evolution.ddl == [
        'ALTER TABLE "dbo"."t" ADD COLUMN IF NOT EXISTS "created" timestamp(6)',
        'ALTER TABLE "dbo"."t" ALTER COLUMN "created" SET DEFAULT LOCALTIMESTAMP',
    ]
    (change,) = evolution.changes
    assert change.detail is not None
    assert "default (sysdatetime()) carried as LOCALTIMESTAMP" in change.detail


def test_a_default_that_is_not_carried_is_recorded_with_the_reason() -> None:
    odd = SourceColumn("Code", 2, "int", default="([dbo].[next_code]())")
    evolution = plan_evolution(_table(odd), _existing())
    assert evolution.ddl == ['ALTER TABLE "dbo"."t" ADD COLUMN IF NOT EXISTS "code" integer']
    (change,) = evolution.changes
    assert change.detail is not None
    assert "the source default ([dbo].[next_code]()) is not carried: no PostgreSQL equivalent" in change.detail
