"""``mssql2pg emulator install|agent|scan|mode``: drive :mod:`mssql2pg.emulator` in a PostgreSQL database.

These commands take the database as ``--url`` instead of a configuration; each declares it
(:func:`mssql2pg.cli.options.use_database`) so that its password is never logged and a failed connection
names it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from mssql2pg.cli.options import use_database


@click.group("emulator")
def command() -> None:
    """Install and drive the SQL Server CDC emulator in a PostgreSQL database."""


@command.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db to install into")
def install(url: str) -> None:
    """Install SQL Server's CDC surface (schemas cdc and sys) into a PostgreSQL database; idempotent."""
    from mssql2pg.emulator.install import install as do_install  # noqa: PLC0415 - start-up speed only

    use_database(url)
    do_install(url)
    click.echo(
        "SQL Server CDC emulator installed; next: CALL sys.sp_cdc_enable_db(), then "
        "CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 't', role_name => NULL)"
    )


@command.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db with the emulator installed")
@click.option(
    "--polling-interval",
    default="1s",
    show_default=True,
    help="pause between scans when nothing is pending (e.g. 500ms, 1s, 5s)",
)
def agent(url: str, polling_interval: str) -> None:
    """Run capture scans in a loop, like SQL Server Agent's capture job (switches to agent capture mode)."""
    # Imported here for start-up speed only (keeps `--help` fast).
    from mssql2pg.config.durations import parse_duration  # noqa: PLC0415
    from mssql2pg.emulator.agent import run  # noqa: PLC0415

    try:
        interval = parse_duration(polling_interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--polling-interval") from exc
    use_database(url)
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    published = run(url, interval, stop)
    click.echo(f"capture agent stopped after publishing {published} transactions")


@command.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db with the emulator installed")
def scan(url: str) -> None:
    """Run one capture scan now (like EXEC sys.sp_cdc_scan)."""
    from mssql2pg.emulator.install import scan as do_scan  # noqa: PLC0415 - start-up speed only

    use_database(url)
    click.echo(f"published {do_scan(url)} transactions")


@command.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db with the emulator installed")
@click.argument("mode", type=click.Choice(["immediate", "agent"]))
def mode(url: str, mode: str) -> None:
    """Capture timing: immediate (visible at commit) or agent (visible after a scan)."""
    from mssql2pg.emulator.install import set_capture_mode  # noqa: PLC0415 - start-up speed only

    use_database(url)
    set_capture_mode(url, mode)
    click.echo(f"capture mode: {mode}")
