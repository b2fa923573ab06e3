"""The dead-letter payload: values round-trip exactly through JSON (even those jsonb cannot hold), and
nothing stored contains credentials."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pg8000.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssql2pg.model import ChangeRow, Operation, SourceColumn
from mssql2pg.positions import Lsn
from mssql2pg.sink import build_target_table
from mssql2pg.sink.deadletters import (
    change_payload,
    dead_letter,
    decode_value,
    encode_value,
    error_class,
    error_message,
    row_from_payload,
)
from tests.fixtures.target import capture_instance

VALUES = [
    None,
    True,
    42,
    -(2**63),
    1.5,
    float("inf"),
    "plain",
    "nul\x00inside",
    "half \ud800 pair",
    "ünïcødé ✓",
    b"\x00\xff",
    Decimal("-12345678901234567890.123456789"),
    datetime(2024, 2, 29, 23, 59, 59, 999999),
    datetime(2024, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    date(1, 1, 1),
    time(23, 59, 59, 123456),
    uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_value_round_trips_through_json_text(value: object) -> None:
    text = json.dumps(encode_value(value), ensure_ascii=False)
    assert "\\u0000" not in text  # PostgreSQL's jsonb refuses \u0000
    text.encode("utf-8")  # and the document is valid UTF-8
    back = decode_value(json.loads(text))
    assert back == value
    assert type(back) is type(value)


def test_nan_round_trips() -> None:
    back = decode_value(json.loads(json.dumps(encode_value(float("nan")))))
    assert isinstance(back, float)
    assert back != back  # noqa: PLR0124 - NaN


@given(st.text())
def test_any_text_round_trips(value: str) -> None:
    assert decode_value(json.loads(json.dumps(encode_value(value), ensure_ascii=False))) == value


def test_unknown_tag_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="cannot be turned back"):
        decode_value({"$nope": "1"})


CI = capture_instance(
    "dbo.T",
    [
        SourceColumn("Id", 1, "int", nullable=False),
        SourceColumn("Body", 2, "nvarchar"),
        SourceColumn("Blob", 3, "varbinary"),
    ],
    ["Id"],
)


def test_payload_names_the_change_and_rebuilds_the_row() -> None:
    table = build_target_table(CI)
    row = ChangeRow(
        CI.source, CI.name, Lsn.from_int(0x2D0580001D), Lsn.from_int(7), Operation.UPDATE_AFTER, (1, "a\x00", b"\x01")
    )
    payload = change_payload(table, row, b"\x00" * 9 + b"\x2a", datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    assert payload["source_table"] == "dbo.T"
    assert payload["commit_lsn"] == str(row.commit_lsn)
    assert payload["seqval"] == str(row.seqval)
    assert payload["operation"] == 4
    assert payload["source_tran_id"] == "0000000000000000002a"
    assert payload["commit_time"] == "2024-05-01T12:00:00+00:00"
    assert payload["types"] == {"Id": "int", "Body": "nvarchar", "Blob": "varbinary"}
    rebuilt = row_from_payload(json.loads(json.dumps(payload)), table)
    assert rebuilt == row


def test_payload_of_another_capture_instance_shape_is_refused() -> None:
    table = build_target_table(CI)
    row = ChangeRow(CI.source, CI.name, Lsn.from_int(1), Lsn.from_int(1), Operation.INSERT, (1, "x", None))
    payload = change_payload(table, row, None)
    del payload["values"]["Blob"]
    with pytest.raises(ValueError, match="Blob"):
        row_from_payload(payload, table)


class FakeServerError(pg8000.exceptions.DatabaseError):
    """A pg8000 DatabaseError (the server's fields in args[0]) under a name of its own."""


def test_error_class_and_message_come_from_the_server_fields_and_hold_no_credentials() -> None:
    server = FakeServerError(
        {
            "C": "23505",
            "M": 'duplicate key value violates unique constraint "u"',
            "D": "Key (email)=(a@x) already exists; dsn postgresql://app:s3cret@db/x password=hunter2",
        }
    )
    wrapper = RuntimeError("while applying")
    wrapper.__cause__ = server
    assert error_class(wrapper) == "FakeServerError [23505]"
    assert "already exists" in error_message(wrapper)
    table = build_target_table(CI)
    row = ChangeRow(CI.source, CI.name, Lsn.from_int(1), Lsn.from_int(1), Operation.INSERT, (1, "x", None))
    try:
        raise wrapper
    except RuntimeError as exc:
        letter = dead_letter(table, row, exc, None)
    stored = letter.message + letter.stack + letter.error_class
    assert "s3cret" not in stored
    assert "hunter2" not in stored
    assert "duplicate key" in letter.message
