"""``mssql2pg emulator install|agent|scan|mode``."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from mssql2pg.config.durations import parse_duration


@click.group()
def emulator() -> None:
    """Install and drive the SQL Server CDC emulator in a PostgreSQL database."""


@emulator.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db to install into")
def install(url: str) -> None:
    """Install SQL Server's CDC surface (schemas cdc and sys) into a PostgreSQL database; idempotent."""
    from mssql2pg.emulator.install import install as do_install  # noqa: PLC0415

    do_install(url)
    click.echo(
        "SQL Server CDC emulator installed; next: CALL sys.sp_cdc_enable_db(), then "
        "CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 't', role_name => NULL)"
    )


@emulator.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db with the emulator installed")
@click.option(
    "--polling-interval",
    default="1s",
    show_default=True,
    help="pause between scans when nothing is pending (e.g. 500ms, 1s, 5s)",
)
def agent(url: str, polling_interval: str) -> None:
    """Run capture scans in a loop, like SQL Server Agent's capture job (switches to agent capture mode)."""
    from mssql2pg.emulator.agent import run  # noqa: PLC0415

    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    published = run(url, parse_duration(polling_interval), stop)
    click.echo(f"capture agent stopped after publishing {published} transactions")


@emulator.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db with the emulator installed")
def scan(url: str) -> None:
    """Run one capture scan now (like EXEC sys.sp_cdc_scan)."""
    from mssql2pg.emulator.install import scan as do_scan  # noqa: PLC0415

    click.echo(f"published {do_scan(url)} transactions")


@emulator.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db with the emulator installed")
@click.argument("mode", type=click.Choice(["immediate", "agent"]))
def mode(url: str, mode: str) -> None:
    """Capture timing: immediate (visible at commit) or agent (visible after a scan)."""
    from mssql2pg.emulator.install import set_capture_mode  # noqa: PLC0415

    set_capture_mode(url, mode)
    click.echo(f"capture mode: {mode}")
