"""Clock skew measurement with injected clocks (issue 17 point 3): round-trip correction, the skew, the warning,
and lag and staleness corrected for it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import capture_logs

from mssql2pg.observability import Observability
from mssql2pg.pipeline.clock import ClockReading, Offset, measure_offset, publish

T0 = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


class Network:
    """A local clock and a remote one ``offset`` seconds off, with ``delays`` seconds of each request's
    outbound and return trip (one pair per reading)."""

    def __init__(self, offset: float, delays: list[tuple[float, float]]) -> None:
        self.local = T0.timestamp()
        self.offset = offset
        self._delays: Iterator[tuple[float, float]] = iter(delays)
        self._back = 0.0

    def local_clock(self) -> float:
        self.local += self._back  # the reply's trip back happens between the remote read and "received"
        self._back = 0.0
        return self.local

    def remote(self) -> datetime:
        out, back = next(self._delays)
        self.local += out
        self._back = back
        return datetime.fromtimestamp(self.local + self.offset, UTC)


def test_offset_is_round_trip_corrected() -> None:
    net = Network(offset=-3600.0, delays=[(0.1, 0.1)])
    reading = measure_offset(net.remote, net.local_clock, samples=1)
    assert reading.seconds == pytest.approx(-3600.0)
    assert reading.round_trip == pytest.approx(0.2)


def test_the_reading_with_the_shortest_round_trip_wins() -> None:
    # An asymmetric slow reading is off by half its asymmetry; the fast one is nearly exact.
    net = Network(offset=10.0, delays=[(2.0, 0.0), (0.01, 0.01), (0.0, 1.0)])
    reading = measure_offset(net.remote, net.local_clock, samples=3)
    assert reading.round_trip == pytest.approx(0.02)
    assert reading.seconds == pytest.approx(10.0)


def test_a_remote_time_without_zone_is_utc() -> None:
    reading = measure_offset(lambda: (T0 + timedelta(seconds=5)).replace(tzinfo=None), T0.timestamp, 1)
    assert reading.seconds == pytest.approx(5.0)


def test_skew_is_source_minus_target() -> None:
    reading = ClockReading(Offset(-7200.0, 0.002), Offset(1.5, 0.001))
    assert reading.skew == -7201.5


class WallClock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def obs() -> tuple[Observability, WallClock]:
    wall = WallClock()
    return Observability(wall_clock=wall, process_metrics=False), wall


def _scrape(obs: Observability, name: str) -> float | None:
    for line in obs.metrics.render().decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_publish_exports_the_skew_and_warns_above_the_threshold(obs: tuple[Observability, WallClock]) -> None:
    o, _ = obs
    structlog.reset_defaults()
    with capture_logs() as logs:
        publish(ClockReading(Offset(-90.0, 0.01), Offset(0.0, 0.01)), o, warn_above=5.0)
        publish(ClockReading(Offset(1.0, 0.01), Offset(0.0, 0.01)), o, warn_above=5.0)
    assert _scrape(o, "mssql2pg_clock_skew_seconds") == 1.0
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "clock skew" in warnings[0]["event"]
    assert warnings[0]["skew_s"] == -90.0


def test_stale_and_lag_use_now_on_the_sources_clock(obs: tuple[Observability, WallClock]) -> None:
    o, wall = obs
    assert o.source_now() == T0
    publish(ClockReading(Offset(-172_800.0, 0.0), Offset(0.0, 0.0)), o, warn_above=5.0)
    assert o.source_now() == T0 - timedelta(days=2)  # a change committed "2 days ago" on that clock is fresh
    wall.now += 30
    assert o.source_now() == T0 - timedelta(days=2) + timedelta(seconds=30)
