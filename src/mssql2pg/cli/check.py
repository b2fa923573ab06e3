"""``mssql2pg check``: print each finding of :mod:`mssql2pg.pipeline.check` as it is made.

Exit code 1 when a check failed (each failure is followed by what to do; a finding that passed may be
followed by advice too, such as the ``EXEC`` that disables a capture instance no longer needed), 2 when a
database cannot be reached (told in one line by :mod:`mssql2pg.cli`, like in every command).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mssql2pg.cli.options import config_option, load

if TYPE_CHECKING:
    from mssql2pg.pipeline.check import Finding


@click.command("check")
@config_option
def command(config_path: Path | None) -> None:
    """Check configuration, connectivity, CDC set-up, the capture job and the retention margin."""
    # Imported here for start-up speed only (keeps `--help` fast).
    from mssql2pg.pipeline.check import Report, run_checks  # noqa: PLC0415
    from mssql2pg.pipeline.connections import target_connector  # noqa: PLC0415

    config = load(config_path)
    report = run_checks(config, target_connector(config), Report(on_finding=_print))
    if not report.ok:
        raise click.exceptions.Exit(1)
    click.echo("all checks passed")


def _print(finding: Finding) -> None:
    click.echo(("  ok    " if finding.ok else "  FAIL  ") + finding.what)
    if finding.hint:  # a failure's remedy, or advice on a finding that passed (the EXEC that retires an instance)
        click.echo(f"        -> {finding.hint}")
