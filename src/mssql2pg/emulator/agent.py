"""The emulated SQL Server Agent capture job: run a capture scan every polling interval until stopped.

While it runs (in agent capture mode) changes become visible a scan at a time, like SQL Server's capture job;
when it stops, nothing new is captured and ``sys.fn_cdc_get_max_lsn()`` stops moving — what a stopped SQL
Server Agent looks like to a reader.
"""

from __future__ import annotations

import threading

import structlog

from mssql2pg.emulator.install import connect

log = structlog.get_logger(component="emulator-agent")


def run(url: str, polling_interval: float, stop: threading.Event, *, maxtrans: int | None = None) -> int:
    """Scan until ``stop`` is set; returns the number of transactions published. Switches to agent mode."""
    conn = connect(url)
    published = 0
    try:
        conn.run("CALL cdc_emulator.set_capture_mode('agent')")
        while not stop.is_set():
            rows = conn.run(
                "SELECT cdc_emulator.scan(coalesce(:m, (SELECT maxtrans FROM cdc_emulator.cdc_jobs "
                "WHERE job_type = 'capture')))",
                m=maxtrans,
            )
            count = int(rows[0][0])
            published += count
            if count:
                log.info("capture scan", transactions=count)
            else:
                stop.wait(polling_interval)
    finally:
        conn.close()
    return published
