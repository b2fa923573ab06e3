from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssql2pg.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("given_value", "seconds"),
    [
        (1, 1.0),
        (0.5, 0.5),
        ("0.25", 0.25),
        ("500ms", 0.5),
        ("1s", 1.0),
        ("10m", 600.0),
        ("24h", 86400.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        (" 1.5 s ", 1.5),
        ("1m30s", 90.0),
    ],
)
def test_parses_numbers_and_unit_strings(given_value: object, seconds: float) -> None:
    assert parse_duration(given_value) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "ten seconds", "5 parsecs", "1h 30", "-1s", True, None, [1], "1.2.3s"])
def test_rejects_what_is_not_a_duration(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**7))
def test_format_round_trips_whole_milliseconds(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "200ms"), (1, "1s"), (600, "10m"), (86400, "24h"), (90, "90s"), (0, "0s")]
)
def test_format_is_readable(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
