"""The emulated SQL Server Agent capture job: run a capture scan every polling interval until stopped.

While it runs (in agent capture mode) changes become visible a scan at a time, like SQL Server's capture job;
when it stops, nothing new is captured and ``sys.fn_cdc_get_max_lsn()`` stops moving — what a stopped SQL
Server Agent looks like to a reader.

SQL Server Agent comes back with its server, so the agent survives its PostgreSQL restarting: a transient
fault (connection lost, server shutting down or starting up) is logged and the agent reconnects after an
exponential backoff with jitter (:class:`mssql2pg.retry.Backoff`, the pipeline's ``retry`` defaults), as the
pipeline does. A scan is one transaction, so one cut short is simply done again. A terminal fault (say, the
emulator is not installed in that database) ends the agent at once: retrying cannot fix it.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import structlog

from mssql2pg.classify import classify
from mssql2pg.config import RetrySettings
from mssql2pg.emulator.install import connect
from mssql2pg.errors import TerminalError
from mssql2pg.retry import Backoff, BackoffSettings

log = structlog.get_logger(component="emulator-agent")

SCAN = "SELECT cdc_emulator.scan(coalesce(:m, (SELECT maxtrans FROM cdc_emulator.cdc_jobs WHERE job_type = 'capture')))"


@dataclass
class CaptureAgent:
    """Scans in a loop on one connection, and opens a new one (after a backoff) when that one fails."""

    url: str
    polling_interval: float
    maxtrans: int | None = None
    retry: BackoffSettings = field(default_factory=RetrySettings)
    published: int = 0
    """Transactions published since the agent started, over every connection."""
    _scanned: bool = False  # a scan succeeded on the current connection

    def run(self, stop: threading.Event) -> int:
        """Scan until ``stop`` is set; returns the number of transactions published."""
        backoff = Backoff(self.retry)
        delays = backoff.delays()
        failures = 0
        while not stop.is_set():
            try:
                self._session(stop, failures)
            except Exception as exc:
                error = classify(exc)
                if isinstance(error, TerminalError):
                    if error is exc:
                        raise
                    raise error from exc
                if self._scanned:  # it worked for a while: start the backoff again from the shortest delay
                    delays, failures = backoff.delays(), 0
                failures += 1
                delay = next(delays)
                log.warning(
                    "capture agent lost its database; reconnecting",
                    attempt=failures,
                    next_delay_s=round(delay, 3),
                    error=str(error).splitlines()[0],
                )
                stop.wait(delay)
        return self.published

    def _session(self, stop: threading.Event, failures: int) -> None:
        """One connection: switch to agent mode and scan until ``stop`` is set (or the connection fails)."""
        self._scanned = False
        conn = connect(self.url)
        try:
            if failures:
                log.info("capture agent reconnected", failed_attempts=failures)
            conn.run("CALL cdc_emulator.set_capture_mode('agent')")
            while not stop.is_set():
                count = int(conn.run(SCAN, m=self.maxtrans)[0][0])
                self._scanned = True
                self.published += count
                if count:
                    log.info("capture scan", transactions=count)
                else:
                    stop.wait(self.polling_interval)
        finally:
            with contextlib.suppress(Exception):  # a connection the server dropped cannot say goodbye
                conn.close()


def run(
    url: str,
    polling_interval: float,
    stop: threading.Event,
    *,
    maxtrans: int | None = None,
    retry: BackoffSettings | None = None,
) -> int:
    """Scan until ``stop`` is set, reconnecting when the database restarts; returns the number of transactions
    published. Switches to agent mode."""
    agent = CaptureAgent(url, polling_interval, maxtrans, retry if retry is not None else RetrySettings())
    return agent.run(stop)
