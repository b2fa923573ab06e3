"""``mssql2pg run``: replicate continuously (or once, with ``--until-caught-up``).

Exit codes: 0 on a clean stop (SIGTERM/SIGINT, or caught up), 2 for a configuration or set-up problem
(the message says what to change), 1 for a terminal fault the pipeline cannot work around (both told in one
line by :mod:`mssql2pg.cli`).

A stop request lets the current PostgreSQL transaction finish (or rolls back a partly received source
transaction). If that cannot happen within :data:`STOP_GRACE_SECONDS` - typically because the connection to a
database hangs without an error (a black-holed network, a frozen server), so a socket read never returns -
the process exits 0 anyway without committing: the open transaction is abandoned and the server rolls it
back, the checkpoint still names the last committed transaction, and the next start resumes from there. That
is the same recovery a kill -9 takes, but it keeps the stop bounded, inside an orchestrator's grace period
(Kubernetes waits 30 s by default before it sends SIGKILL).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from mssql2pg.cli.options import config_option, load

if TYPE_CHECKING:
    import structlog

    from mssql2pg.config import Config

STOP_GRACE_SECONDS = 15.0


@click.command("run")
@config_option
@click.option("--until-caught-up", is_flag=True, help="apply everything up to the source's current max LSN, then exit")
def command(config_path: Path | None, until_caught_up: bool) -> None:
    """Replicate the configured tables from SQL Server CDC into PostgreSQL."""
    from mssql2pg.pipeline.assembly import run_pipeline  # noqa: PLC0415 - start-up speed only (keeps `--help` fast)

    config: Config = load(config_path, log_stream=sys.stdout)  # a service: its log stream is stdout
    stop = threading.Event()
    _install_signal_handlers(stop)
    stats = run_pipeline(config, stop, until_caught_up=until_caught_up)
    _log().info(
        "pipeline stopped",
        reason="caught up" if until_caught_up and not stop.is_set() else "stop requested",
        transactions=stats.transactions,
        rows=stats.rows,
        last_lsn=str(stats.last_lsn),
        attempts=stats.attempts,
    )


def _install_signal_handlers(stop: threading.Event, grace: float = STOP_GRACE_SECONDS) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        _log().info(
            "stop requested; finishing the current transaction",
            signal=signal.Signals(signum).name,
            grace_s=grace,
        )
        stop.set()
        # A handler runs in the main thread, which may be the one blocked in a socket read: the watchdog is a
        # thread of its own so that it fires even then.
        watchdog = threading.Timer(grace, _abandon, args=(grace,))
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _abandon(grace: float) -> None:
    """The graceful stop did not finish in time: exit without committing (see the module docstring)."""
    _log().warning(
        "stop did not complete in time; abandoning the open transaction (the server rolls it back, the next "
        "start resumes from the last checkpoint)",
        grace_s=grace,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _log() -> structlog.stdlib.BoundLogger:
    # Imported on first use, not with the module, for start-up speed only (`mssql2pg --help` loads this module).
    from mssql2pg.observability.logging import get_logger  # noqa: PLC0415

    return get_logger("cli")
