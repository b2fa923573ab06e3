"""The last key of an initial snapshot's progress is stored as JSON and bound again after a restart: each value
must come back with the type the source driver gave it, or the resumed keyset page would compare the wrong way
(a number as text, a timestamp as a string)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from mssql2pg.control.snapshots import decode_key, encode_key


@pytest.mark.parametrize(
    "key",
    [
        (1,),
        (2**63 - 1, -5),  # beyond a JSON number's exact range
        ("ab'c", "ünïcode"),
        (True, 0),  # a bool stays a bool, an int an int
        (Decimal("12345678901234567890.123456"),),
        (dt.datetime(2026, 12, 5, 7, 0, 1, 123456), dt.date(2026, 1, 2), dt.time(23, 59, 58, 7)),
        (dt.datetime(2026, 12, 5, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), b"\x00\x01\xff"),
        (1.5,),
    ],
)
def test_a_key_round_trips_through_json_with_its_types(key: tuple[object, ...]) -> None:
    back = decode_key(json.loads(json.dumps(encode_key(key))))
    assert back == key
    assert [type(v) for v in back] == [type(v) for v in key]


def test_a_buffer_is_stored_as_bytes() -> None:
    assert decode_key(encode_key([bytearray(b"\x01"), memoryview(b"\x02")])) == (b"\x01", b"\x02")


def test_a_value_of_an_unknown_type_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be recorded"):
        encode_key([object()])
