"""``mssql2pg demo``: run :func:`mssql2pg.demo.scenario.run_demo` and show its narration on the terminal."""

from __future__ import annotations

import random
import sys
import threading

import click


@click.command("demo")
@click.option("--transactions", default=3000, show_default=True, help="source transactions to run")
@click.option("--seed", type=int, default=None, help="workload seed (random if omitted; printed)")
def command(transactions: int, seed: int | None) -> None:
    """Run the pipeline end to end on a throwaway local PostgreSQL (SQL Server CDC emulated)."""
    # Imported here for start-up speed only (keeps `--help` fast).
    from mssql2pg.demo.scenario import run_demo  # noqa: PLC0415
    from mssql2pg.observability.logging import configure_logging  # noqa: PLC0415

    seed = seed if seed is not None else random.randrange(1 << 30)  # noqa: S311 - not cryptographic
    configure_logging("warning", "console", stream=sys.stdout)  # only what needs attention, between the steps
    say = _Printer()
    try:
        ok = run_demo(transactions, seed, threading.Event(), say)
    except KeyboardInterrupt:
        say.done()
        click.echo("\ninterrupted: the pipeline stopped and the throwaway server was removed", err=True)
        sys.exit(130)
    if not ok:
        raise click.ClickException("the target does NOT match the source (this is a bug: please report it)")
    say.step("target matches source exactly ✔")


class _Printer:
    """Progress on one rewritten line on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.open_line = False

    def step(self, text: str) -> None:
        self.done()
        click.echo(f"» {text}")

    def progress(self, text: str) -> None:
        if self.tty:
            click.echo(f"\r  {text}\033[K", nl=False)
            self.open_line = True

    def done(self) -> None:
        if self.open_line:
            click.echo()
            self.open_line = False
