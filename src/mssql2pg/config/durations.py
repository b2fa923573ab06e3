"""Durations in the configuration: a number of seconds, or a string such as ``500ms``, ``10m``, ``1h30m``.

People write timeouts the way they think of them ("24h", not 86400), so every duration key accepts both.
Internally a duration is always a ``float`` of seconds: one unit everywhere, no ``timedelta`` arithmetic.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")


def parse_duration(value: object) -> float:
    """Seconds from ``5``, ``0.5``, ``"0.5"``, ``"500ms"``, ``"1s"``, ``"10m"``, ``"24h"``, ``"2d"``, ``"1h30m"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        msg = f"expected a duration (seconds, or a string like '500ms', '10s', '5m', '24h'), got {value!r}"
        raise ValueError(msg)
    if isinstance(value, int | float):
        if value < 0:
            msg = f"a duration cannot be negative, got {value!r}"
            raise ValueError(msg)
        return float(value)
    text = value.strip().lower()
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    if not _WHOLE.fullmatch(text):
        msg = f"expected a duration such as '500ms', '10s', '5m', '24h' or '1h30m', got {value!r}"
        raise ValueError(msg)
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest exact text for ``seconds`` (``0.2`` → ``200ms``, ``600`` → ``10m``), used in docs and errors."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    for unit, size_ms in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size_ms == 0:
            return f"{ms // size_ms}{unit}"
    return f"{ms}ms"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A pydantic field type: any accepted duration in, seconds (``float``) out."""
