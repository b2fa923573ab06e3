"""Driver values → canonical values, for the representations python-tds and pg8000 produce."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssql2pg.model import SourceColumn
from mssql2pg.source.values import RowDecoder, decode_value

UTC = dt.UTC
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
MINUS_08 = dt.timezone(dt.timedelta(hours=-8))


class PytdsFixedOffset(dt.tzinfo):
    """Stands in for python-tds' own fixed-offset tzinfo class (not a ``datetime.timezone``)."""

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes

    def utcoffset(self, _dt: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(minutes=self.minutes)

    def dst(self, _dt: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, _dt: dt.datetime | None) -> str:
        return f"{self.minutes:+d}"


GUID = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")

# (sql_type, driver value, canonical value): python-tds and pg8000 representations side by side.
CASES: list[tuple[str, Any, Any]] = [
    ("bit", True, True),
    ("bit", 0, False),
    ("bit", "1", True),
    ("tinyint", 255, 255),
    ("smallint", -32768, -32768),
    ("int", 2147483647, 2147483647),
    ("bigint", -9223372036854775808, -9223372036854775808),
    ("bigint", Decimal("9223372036854775807"), 9223372036854775807),
    ("decimal", Decimal("12345678901234567890123456789.012345678"), Decimal("12345678901234567890123456789.012345678")),
    ("numeric", 5, Decimal(5)),
    ("money", Decimal("-922337203685477.5808"), Decimal("-922337203685477.5808")),
    ("money", "-$1,234.50", Decimal("-1234.50")),
    ("smallmoney", "($3.25)", Decimal("-3.25")),
    ("smallmoney", 0.1, Decimal("0.1")),
    ("float", 1.5e308, 1.5e308),
    ("real", Decimal("0.5"), 0.5),
    ("date", dt.date(1, 1, 1), dt.date(1, 1, 1)),
    ("date", dt.datetime(9999, 12, 31, 0, 0), dt.date(9999, 12, 31)),
    ("date", "2024-02-29", dt.date(2024, 2, 29)),
    ("time", dt.time(23, 59, 59, 999999), dt.time(23, 59, 59, 999999)),
    ("time", dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=4), dt.time(1, 2, 3, 4)),
    ("time", "12:34:56.1234567", dt.time(12, 34, 56, 123456)),
    ("time", dt.time(1, 0, tzinfo=UTC), dt.time(1, 0)),
    ("datetime2", dt.datetime(2024, 3, 31, 2, 30, 0, 123456), dt.datetime(2024, 3, 31, 2, 30, 0, 123456)),
    ("datetime", dt.datetime(2024, 1, 1, 12, tzinfo=UTC), dt.datetime(2024, 1, 1, 12)),
    ("smalldatetime", dt.date(2024, 5, 6), dt.datetime(2024, 5, 6)),
    ("datetime2", "9999-12-31 23:59:59.9999999", dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    (
        "datetimeoffset",
        dt.datetime(2024, 3, 10, 2, 30, tzinfo=PytdsFixedOffset(-480)),
        dt.datetime(2024, 3, 10, 2, 30, tzinfo=MINUS_08),
    ),
    (
        "datetimeoffset",
        "2024-03-31 02:30:00.1234567+05:30",
        dt.datetime(2024, 3, 31, 2, 30, 0, 123456, tzinfo=PLUS_0530),
    ),
    # the emulator's datetimeoffset domain is text, with or without a blank before the offset
    (
        "datetimeoffset",
        "2024-03-31 02:30:00.1234567 +05:30",
        dt.datetime(2024, 3, 31, 2, 30, 0, 123456, tzinfo=PLUS_0530),
    ),
    ("datetimeoffset", "0001-01-01T00:00:00-08:00", dt.datetime(1, 1, 1, tzinfo=MINUS_08)),
    ("datetimeoffset", (dt.datetime(2024, 1, 1, 8, 0), 330), dt.datetime(2024, 1, 1, 8, 0, tzinfo=PLUS_0530)),
    ("datetimeoffset", dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
    ("nvarchar", "😀 e\u0301 שלום", "😀 e\u0301 שלום"),
    ("varchar", "", ""),
    ("char", "ab  ", "ab  "),
    ("xml", "<a x='1'/>", "<a x='1'/>"),
    ("ntext", b"caf\xc3\xa9", "café"),
    ("varbinary", b"", b""),
    ("binary", bytearray(b"\x00\x01"), b"\x00\x01"),
    ("image", memoryview(b"\xff"), b"\xff"),
    ("timestamp", b"\x00\x00\x00\x00\x00\x00\x07\xd1", b"\x00\x00\x00\x00\x00\x00\x07\xd1"),
    ("rowversion", "\\x0102", b"\x01\x02"),
    ("geography", b"\xe6\x10\x00\x00", b"\xe6\x10\x00\x00"),
    ("hierarchyid", bytearray(b"\x58"), b"\x58"),
    ("uniqueidentifier", GUID, GUID),
    ("uniqueidentifier", "6f9619ff-8b86-d011-b42d-00c04fc964ff", GUID),
    ("uniqueidentifier", bytes.fromhex("FF19966F868B11D0B42D00C04FC964FF"), GUID),
    ("sql_variant", "text", "text"),
    ("sql_variant", 42, "42"),
    ("sql_variant", Decimal("1.50"), "1.50"),
    ("sql_variant", True, "1"),
    ("sql_variant", b"\x0a\xff", "0x0AFF"),
    ("sql_variant", dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02 03:04:05"),
    ("sql_variant", dt.date(2024, 1, 2), "2024-01-02"),
    ("sql_variant", GUID, "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
    ("NVARCHAR", "upper-case type name", "upper-case type name"),
    ("some_future_type", object, object),
]


@pytest.mark.parametrize(("sql_type", "value", "expected"), CASES)
def test_decode(sql_type: str, value: Any, expected: Any) -> None:
    got = decode_value(sql_type, value)
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(expected, dt.datetime | dt.time):
        assert got.utcoffset() == expected.utcoffset()
        assert type(got.tzinfo) is type(expected.tzinfo)


def test_datetimeoffset_keeps_the_original_offset_not_utc() -> None:
    got = decode_value("datetimeoffset", dt.datetime(2024, 10, 27, 1, 30, tzinfo=PytdsFixedOffset(120)))
    assert got.utcoffset() == dt.timedelta(hours=2)
    assert got.hour == 1


@pytest.mark.parametrize("sql_type", ["bit", "int", "decimal", "date", "time", "datetime2", "datetimeoffset"])
def test_none_stays_none(sql_type: str) -> None:
    assert decode_value(sql_type, None) is None


@pytest.mark.parametrize(
    ("sql_type", "value"),
    [
        ("bit", "maybe"),
        ("int", 1.5),
        ("decimal", object()),
        ("date", 5),
        ("time", 5),
        ("datetime", 5),
        ("datetimeoffset", dt.datetime(2024, 1, 1)),
        ("datetimeoffset", 5),
        ("varbinary", "plain text"),
        ("uniqueidentifier", b"short"),
    ],
)
def test_unexpected_representations_fail_loudly(sql_type: str, value: Any) -> None:
    with pytest.raises(ValueError, match=r"not a|without an offset"):
        decode_value(sql_type, value)


def test_row_decoder_decodes_by_column_and_checks_width() -> None:
    cols = (
        SourceColumn("id", 1, "int"),
        SourceColumn("amount", 2, "money"),
        SourceColumn("note", 3, "nvarchar"),
    )
    decode = RowDecoder(cols)
    assert decode((1, "$2.50", None)) == (1, Decimal("2.50"), None)
    with pytest.raises(ValueError, match="expected 3"):
        decode((1, 2))


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**14), max_value=10**14))
def test_money_text_round_trips(value: Decimal) -> None:
    text = f"{'-' if value < 0 else ''}${abs(value):,.4f}"
    assert decode_value("money", text) == value


@given(st.datetimes(timezones=st.just(PLUS_0530)))
def test_datetimeoffset_text_round_trips(value: dt.datetime) -> None:
    assert decode_value("datetimeoffset", value.isoformat(sep=" ")) == value


def test_python_tds_own_fixed_offset_tzinfo_becomes_a_plain_timezone() -> None:
    pytds_tz = pytest.importorskip("pytds.tz")
    value = dt.datetime(2024, 3, 10, 2, 30, 0, 1234, tzinfo=pytds_tz.FixedOffsetTimezone(-480))
    got = decode_value("datetimeoffset", value)
    assert got == dt.datetime(2024, 3, 10, 2, 30, 0, 1234, tzinfo=MINUS_08)
    assert type(got.tzinfo) is dt.timezone
    assert got.hour == 2  # wall clock at the original offset, not converted
