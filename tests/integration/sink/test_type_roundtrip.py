"""Every row of docs/types.md, value by value at its boundaries: written through the applier, read back."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from mssql2pg.model import Operation, SourceColumn
from mssql2pg.sink import Applier, build_target_table
from tests.fixtures.target import Connect, TxBuilder, capture_instance

pytestmark = pytest.mark.integration


def tz(hours: int, minutes: int = 0) -> timezone:
    return timezone(timedelta(hours=hours, minutes=minutes if hours >= 0 else -minutes))


@dataclass(frozen=True)
class Case:
    name: str
    column: SourceColumn
    values: list[Any]
    pg_type: str
    expect: Callable[[Any], Any] = lambda v: v


def col(sql_type: str, **kw: Any) -> SourceColumn:
    return SourceColumn("V", 2, sql_type, **kw)


CASES = [
    Case("bit", col("bit"), [True, False], "boolean"),
    Case("tinyint", col("tinyint"), [0, 255], "smallint"),
    Case("smallint", col("smallint"), [-32768, 32767], "smallint"),
    Case("int", col("int"), [-(2**31), 2**31 - 1], "integer"),
    Case("bigint", col("bigint"), [-(2**63), 2**63 - 1], "bigint"),
    Case(
        "decimal_38_0",
        col("decimal", precision=38, scale=0),
        [Decimal("9" * 38), Decimal("-" + "9" * 38), Decimal(0)],
        "numeric(38,0)",
    ),
    Case(
        "decimal_38_10",
        col("decimal", precision=38, scale=10),
        [Decimal("9" * 28 + "." + "9" * 10), Decimal("-0.0000000001"), Decimal("1.5")],
        "numeric(38,10)",
    ),
    Case(
        "numeric_5_5", col("numeric", precision=5, scale=5), [Decimal("0.99999"), Decimal("-0.00001")], "numeric(5,5)"
    ),
    Case(
        "money",
        col("money"),
        [Decimal("-922337203685477.5808"), Decimal("922337203685477.5807"), Decimal("0.0001")],
        "numeric(19,4)",
    ),
    Case("smallmoney", col("smallmoney"), [Decimal("-214748.3648"), Decimal("214748.3647")], "numeric(10,4)"),
    Case(
        "float",
        col("float"),
        [1.7976931348623157e308, -2.2250738585072014e-308, 0.1, -0.0, 5e-324],
        "double precision",
    ),
    Case("real", col("real"), [3.4028234663852886e38, 1.1754943508222875e-38, 0.5, -1.25], "real"),
    Case("date", col("date"), [date(1, 1, 1), date(9999, 12, 31), date(2024, 2, 29)], "date"),
    Case(
        "time_7",
        col("time", scale=7),
        [time(0, 0), time(23, 59, 59, 999999), time(12, 0, 0, 100)],
        "time(6) without time zone",
    ),
    Case("time_0", col("time", scale=0), [time(23, 59, 59)], "time(0) without time zone"),
    Case(
        "datetime",
        col("datetime"),
        [datetime(1753, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 997000), datetime(2024, 1, 1, 0, 0, 0, 3000)],
        "timestamp(3) without time zone",
    ),
    Case(
        "smalldatetime",
        col("smalldatetime"),
        [datetime(1900, 1, 1), datetime(2079, 6, 6, 23, 59)],
        "timestamp(0) without time zone",
    ),
    Case(
        "datetime2_7",
        col("datetime2", scale=7),
        [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(2024, 3, 10, 2, 30, 0, 1)],
        "timestamp(6) without time zone",
    ),
    Case(
        "datetime2_3",
        col("datetime2", scale=3),
        [datetime(2024, 5, 1, 8, 0, 0, 123000)],
        "timestamp(3) without time zone",
    ),
    Case(
        "datetimeoffset_7",
        col("datetimeoffset", scale=7),
        [
            # around the US DST change of 2024-03-10 (02:00 EST -> 03:00 EDT): same instant, different offsets kept
            datetime(2024, 3, 10, 1, 59, 59, 999999, tzinfo=tz(-5)),
            datetime(2024, 3, 10, 3, 0, 0, tzinfo=tz(-4)),
            datetime(2024, 3, 10, 7, 0, 0, tzinfo=UTC),
            datetime(2024, 6, 1, 12, 0, tzinfo=tz(5, 45)),
            datetime(2024, 6, 1, 12, 0, tzinfo=tz(-14)),
            datetime(2024, 6, 1, 12, 0, tzinfo=tz(14)),
            datetime(1, 1, 2, 0, 0, tzinfo=tz(11)),
            datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=tz(-11)),
        ],
        "timestamp(6) with time zone",
    ),
    Case("char_10", col("char", max_length=10), ["abc       ", "          "], "character varying(10)"),
    Case("nchar_5", col("nchar", max_length=5), ["𝄞a   ", "     "], "character varying(5)"),
    Case(
        "varchar_10",
        col("varchar", max_length=10),
        ["", "trail  ", "a\tb\nc\\d\re", "\\N", "\\."],
        "character varying(10)",
    ),
    Case(
        "nvarchar_20",
        col("nvarchar", max_length=20),
        ["😀𝄞", "e\u0301 \u0065\u0301", "שלום עולם", "مرحبا", "", "O'Brien; --"],
        "character varying(20)",
    ),
    Case("nvarchar_max", col("nvarchar", max_length=-1), ["x" * 1_000_000, "🚀" * 10_000], "text"),
    Case("varchar_max", col("varchar", max_length=-1), ["", "line1\r\nline2"], "text"),
    Case("text", col("text"), ["long" * 10_000, ""], "text"),
    Case("ntext", col("ntext"), ["ünïcödé"], "text"),
    Case("xml", col("xml"), ['<a b="1">t &amp; ü</a>', "<r><c/><c/></r>"], "xml"),
    Case("sql_variant", col("sql_variant"), ["42", "2024-01-01"], "text"),
    Case("binary_4", col("binary", max_length=4), [b"\x00\x01\x02\x03", b"\xff\xff\xff\xff"], "bytea"),
    Case("varbinary_max", col("varbinary", max_length=-1), [b"", bytes(range(256)) * 100], "bytea"),
    Case("image", col("image"), [b"\x89PNG\r\n\x1a\n\x00"], "bytea"),
    Case("rowversion", col("rowversion"), [b"\x00\x00\x00\x00\x00\x00\x07\xd1"], "bytea"),
    Case("timestamp", col("timestamp"), [b"\x00\x00\x00\x00\x00\x00\x00\x01"], "bytea"),
    Case("hierarchyid", col("hierarchyid"), [b"\x58", b""], "bytea"),
    Case("geography", col("geography"), [b"\xe6\x10\x00\x00\x01\x0c" + b"\x00" * 16], "bytea"),
    Case("geometry", col("geometry"), [b"\x00\x00\x00\x00\x01\x0c" + b"\x01" * 16], "bytea"),
    Case(
        "uniqueidentifier",
        col("uniqueidentifier"),
        [uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF"), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)],
        "uuid",
    ),
]


def ci_for(case: Case) -> Any:
    return capture_instance(f"types.T_{case.name}", [SourceColumn("Id", 1, "int", nullable=False), case.column], ["Id"])


def test_every_mapped_type_round_trips_its_boundary_values(target_connect: Connect) -> None:
    """Every type but xml (which needs a PostgreSQL built with libxml: the next test)."""
    assert_round_trip(target_connect, [case for case in CASES if case.column.sql_type != "xml"])


@pytest.mark.libxml
def test_xml_round_trips_its_boundary_values(target_connect: Connect) -> None:
    assert_round_trip(target_connect, [case for case in CASES if case.column.sql_type == "xml"])


def assert_round_trip(target_connect: Connect, cases: list[Case]) -> None:
    """Apply each case's values (and a NULL) to a table of its own, then read back type and values exactly."""
    assert cases
    instances = {case.name: ci_for(case) for case in cases}
    applier = Applier(target_connect, [build_target_table(ci) for ci in instances.values()], "types")
    applier.start()
    changes = [
        (instances[case.name], Operation.INSERT, [i, v])
        for case in cases
        for i, v in enumerate([*case.values, None], start=1)
    ]
    applier.offer(TxBuilder().tx(*changes))
    applier.flush()
    applier.close()
    conn = target_connect()
    for case in cases:
        table = f"types.t_{case.name}"
        assert conn.run(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
            "AND attname = 'v'",
            t=table,
        ) == [[case.pg_type]], case.name
        if case.column.sql_type == "datetimeoffset":
            got = conn.run(f"SELECT extract(epoch FROM v)::numeric(30,6), v_offset FROM {table} ORDER BY id")
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            want = [
                [
                    Decimal((v - epoch) // timedelta(microseconds=1)).scaleb(-6),
                    int(v.utcoffset().total_seconds() // 60),
                ]
                for v in case.values
            ] + [[None, None]]
            assert got == want, case.name
            # the documented way to rebuild the original wall-clock value from the companion column
            local = conn.run(f"SELECT v AT TIME ZONE make_interval(mins => v_offset) FROM {table} ORDER BY id")
            assert [r[0] for r in local] == [v.replace(tzinfo=None) for v in case.values] + [None]
            continue
        # real: read the stored float4 exactly (as float8), not its shortest decimal text
        expr = "v::float8" if case.column.sql_type == "real" else "v"
        got = [r[0] for r in conn.run(f"SELECT {expr} FROM {table} ORDER BY id")]
        want = [*case.values, None]
        if case.column.sql_type == "float":
            assert [None if g is None else repr(g) for g in got] == [None if w is None else repr(w) for w in want]
        else:
            assert got == want, case.name
            assert [type(g) for g in got[:-1]] == [type(w) for w in want[:-1]] or case.name == "bit", case.name
    conn.close()


def test_empty_string_and_null_stay_distinct(target_connect: Connect) -> None:
    ci = capture_instance(
        "dbo.S", [SourceColumn("Id", 1, "int"), SourceColumn("A", 2, "nvarchar", max_length=5)], ["Id"]
    )
    applier = Applier(target_connect, [build_target_table(ci)], "s")
    applier.start()
    applier.offer(TxBuilder().tx((ci, Operation.INSERT, [1, ""]), (ci, Operation.INSERT, [2, None])))
    applier.flush()
    applier.close()
    conn = target_connect()
    assert conn.run("SELECT id, a IS NULL, length(a) FROM dbo.s ORDER BY id") == [[1, False, 0], [2, True, None]]


def test_datetime2_seventh_digit_documented_rule(target_connect: Connect) -> None:
    """The canonical value has microseconds, so timestamp(6) stores it exactly: 23:59:59.999999 stays on its day.

    (SQL Server's 100 ns digit is dropped, not rounded, before the value reaches the sink: see docs/types.md.)
    """
    ci = capture_instance("dbo.D", [SourceColumn("Id", 1, "int"), SourceColumn("At", 2, "datetime2", scale=7)], ["Id"])
    applier = Applier(target_connect, [build_target_table(ci)], "d")
    applier.start()
    last = datetime(2024, 12, 31, 23, 59, 59, 999999)
    applier.offer(TxBuilder().tx((ci, Operation.INSERT, [1, last])))
    applier.flush()
    applier.close()
    conn = target_connect()
    assert conn.run("SELECT at, at::date FROM dbo.d") == [[last, date(2024, 12, 31)]]
