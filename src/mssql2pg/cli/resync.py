"""``mssql2pg resync TABLE``: run :func:`mssql2pg.pipeline.resync.resync_table` and say what it did."""

from __future__ import annotations

from pathlib import Path

import click

from mssql2pg.cli.options import config_option, load

DEFAULT_WAIT_SECONDS = 120.0
"""The same as :data:`mssql2pg.pipeline.resync.DEFAULT_WAIT_SECONDS` (a unit test keeps them equal); written
out here so that ``--help`` shows it without importing the pipeline."""


@click.command("resync")
@config_option
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT_SECONDS,
    show_default=True,
    help="seconds to wait for a running pipeline to leave the table before giving up",
)
@click.argument("table")
def command(config_path: Path | None, wait: float, table: str) -> None:
    """Load TABLE again from a snapshot of the source; streaming then continues from the snapshot's LSN."""
    from mssql2pg.pipeline.resync import resync_table  # noqa: PLC0415 - start-up speed only (keeps `--help` fast)

    result = resync_table(load(config_path), table, wait=wait)
    click.echo(
        f"resynced {result.table}: {result.rows} rows at LSN {result.lsn} in {result.seconds:.1f} s; "
        f"{result.removed} target rows were not in the source any more; {result.dead_letters} dead-lettered"
        + (" (see `mssql2pg dlq list`)" if result.dead_letters else "")
    )
    click.echo(
        "a running pipeline takes the table back within seconds (catching up from the snapshot on its own if it "
        "has moved past it); `mssql2pg status` shows its state"
    )
