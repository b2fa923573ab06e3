"""Clock skew between the source and the target (issue 17 point 3), measured so lag and staleness can be true.

Lag and stale events compare source commit times (stamped by the SOURCE's clock) with "now". If SQL Server's
clock is ahead, changes look younger than they are (lag shows 0 while it is minutes); if it is behind, fresh
changes look old and are flagged stale. So both clocks are read, each against this process's clock, the way
NTP does it: ``offset = remote - (sent + received) / 2``, the sample with the shortest round trip of a few
wins (its error is at most half that round trip). Then:

* ``mssql2pg_clock_skew_seconds`` = source offset - target offset (source minus target; positive: ahead);
* lag and stale events take "now" on the source's clock: this process's clock plus the source offset
  (:meth:`~mssql2pg.observability.Observability.clock_measured`), which is exact whatever the target's or this
  host's clock says;
* a skew above ``clock_skew.warn_above`` is a warning at each measurement.

Measured when a pipeline is built and every ``clock_skew.interval`` while it runs (:class:`ClockWatch`). A
reading that fails (a database down) keeps the last measurement: the replication loop reports outages; a
clock reading is never a reason to stop replicating.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
import structlog

from mssql2pg.config import Config
from mssql2pg.observability import Observability
from mssql2pg.pgconn import PgConnector
from mssql2pg.pipeline.periodic import Periodic
from mssql2pg.sink import statements as sink_sql
from mssql2pg.source import statements as source_sql

log = structlog.get_logger(component="clock")

SAMPLES = 3  # readings per side; the one with the shortest round trip is kept

RemoteClock = Callable[[], datetime]
LocalClock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Offset:
    """A remote clock minus this process's clock, in seconds, and the round trip of the reading it came from
    (the offset's error is at most half of it)."""

    seconds: float
    round_trip: float


@dataclass(frozen=True, slots=True)
class ClockReading:
    """Both sides measured at one moment."""

    source: Offset
    target: Offset

    @property
    def skew(self) -> float:
        """Source clock minus target clock (seconds): what ``mssql2pg_clock_skew_seconds`` exports."""
        return self.source.seconds - self.target.seconds


def measure_offset(remote: RemoteClock, local: LocalClock = time.time, samples: int = SAMPLES) -> Offset:
    """The offset of ``remote`` against ``local``, round-trip corrected: the best of ``samples`` readings."""
    readings = []
    for _ in range(max(1, samples)):
        sent = local()
        value = remote()
        received = local()
        stamp = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
        readings.append(Offset(stamp - (sent + received) / 2, received - sent))
    return min(readings, key=lambda r: r.round_trip)


def source_clock(engine: sa.Engine) -> RemoteClock:
    """Reads the source's clock (``SYSDATETIMEOFFSET()``) on one pooled connection per measurement."""

    def read() -> datetime:
        with engine.connect() as conn:
            value = conn.execute(source_sql.SOURCE_CLOCK).scalar()
        if not isinstance(value, datetime):
            msg = f"the source's clock answered {value!r}, not a time"
            raise TypeError(msg)
        return value

    return read


def measure(engine: sa.Engine, connect: PgConnector, local: LocalClock = time.time) -> ClockReading:
    """Read both clocks. The target connection is opened for the measurement and closed after it; the source
    reads happen on the engine's pool (a connection opened first, so connecting is not in the round trip)."""
    with engine.connect() as warm:  # warm the pool: the first checkout may have to connect
        warm.execute(source_sql.SOURCE_CLOCK).scalar()
    source = measure_offset(source_clock(engine), local)
    target_conn = connect()
    try:

        def target_now() -> datetime:
            rows = target_conn.run(sink_sql.TARGET_CLOCK)
            value = rows[0][0] if rows else None
            if not isinstance(value, datetime):
                msg = f"the target's clock answered {value!r}, not a time"
                raise TypeError(msg)
            return value

        target = measure_offset(target_now, local)
    finally:
        target_conn.close()
    return ClockReading(source, target)


def publish(reading: ClockReading, obs: Observability, warn_above: float) -> None:
    """Export the reading, make lag and staleness use it, and warn when the skew is above ``warn_above``."""
    obs.clock_measured(reading.skew, reading.source.seconds)
    fields = {
        "skew_s": round(reading.skew, 3),
        "source_offset_s": round(reading.source.seconds, 3),
        "target_offset_s": round(reading.target.seconds, 3),
        "uncertainty_s": round((reading.source.round_trip + reading.target.round_trip) / 2, 3),
    }
    if abs(reading.skew) > warn_above:
        log.warning(
            "clock skew between source and target above clock_skew.warn_above; lag and stale events are "
            "corrected for it, but fix the clocks (NTP)",
            warn_above_s=warn_above,
            **fields,
        )
    else:
        log.debug("clock skew measured", **fields)


def measure_and_publish(config: Config, engine: sa.Engine, connect: PgConnector, obs: Observability) -> bool:
    """One measurement, published; False (and the previous measurement kept) when a side could not be read."""
    try:
        reading = measure(engine, connect)
    except Exception as exc:  # any failure only means "not measured this time"
        log.warning("clock skew not measured; keeping the last measurement", error=str(exc))
        return False
    publish(reading, obs, config.clock_skew.warn_above)
    return True


class ClockWatch(Periodic):
    """Measures again every ``clock_skew.interval`` in a daemon thread until :meth:`close`."""

    thread_name = "mssql2pg-clock"

    def __init__(self, config: Config, engine: sa.Engine, connect: PgConnector, obs: Observability) -> None:
        self._config = config
        self._interval = config.clock_skew.interval
        self._engine = engine
        self._connect = connect
        self._obs = obs

    def period(self) -> float:
        return self._interval

    def tick(self) -> None:
        measure_and_publish(self._config, self._engine, self._connect, self._obs)
