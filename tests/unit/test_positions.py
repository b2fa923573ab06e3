from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssql2pg.positions import Lsn

lsn_bytes = st.binary(min_size=10, max_size=10)


def test_text_form_matches_debezium() -> None:
    lsn = Lsn.parse("0x0000002D00000580001D")

    assert str(lsn) == "0000002d:00000580:001d"
    assert lsn.hex() == "0x0000002D00000580001D"
    assert Lsn.parse("0000002d:00000580:001d") == lsn


def test_null_sorts_lowest_and_is_falsy() -> None:
    assert Lsn.NULL < Lsn.ZERO
    assert not Lsn.NULL
    assert str(Lsn.NULL) == "NULL"
    assert Lsn.parse("NULL") is Lsn.NULL or Lsn.parse("NULL") == Lsn.NULL
    assert Lsn.from_bytes(None) == Lsn.NULL


def test_unsigned_order_across_0x7f_0x80() -> None:
    low = Lsn(b"\x00" * 9 + b"\x7f")
    high = Lsn(b"\x00" * 9 + b"\x80")

    assert low < high


def test_increment_carries_across_slot() -> None:
    lsn = Lsn.parse("00000001:00000001:ffff")

    assert str(lsn.increment()) == "00000001:00000002:0000"
    assert lsn.increment().decrement() == lsn


@pytest.mark.parametrize("bad", ["", "0x00", "zz" * 10, "0000002d:00000580"])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not an LSN"):
        Lsn.parse(bad)


def test_wrong_length_bytes_rejected() -> None:
    with pytest.raises(ValueError, match="10 bytes"):
        Lsn(b"\x01\x02")


@given(lsn_bytes, lsn_bytes)
def test_order_equals_integer_order(a: bytes, b: bytes) -> None:
    assert (Lsn(a) < Lsn(b)) == (int.from_bytes(a, "big") < int.from_bytes(b, "big"))


@given(st.one_of(st.none(), lsn_bytes), st.one_of(st.none(), lsn_bytes))
def test_all_comparisons_agree_with_integer_order_and_null_lowest(a: bytes | None, b: bytes | None) -> None:
    """NULL is -1 here: it sorts below every real LSN, including ZERO."""
    x, y = (-1 if v is None else int.from_bytes(v, "big") for v in (a, b))
    la, lb = Lsn(a), Lsn(b)

    assert [la < lb, la <= lb, la > lb, la >= lb, la == lb] == [x < y, x <= y, x > y, x >= y, x == y]


@given(lsn_bytes)
def test_text_round_trip(raw: bytes) -> None:
    lsn = Lsn(raw)

    assert Lsn.parse(str(lsn)) == lsn
    assert Lsn.parse(lsn.hex()) == lsn
    assert Lsn.from_int(lsn.to_int()) == lsn
