"""The ``mssql2pg`` command line.

Every subcommand lives in its own module and registers itself here; failures end with what to do next
(an :class:`~mssql2pg.errors.Mssql2pgError` hint) and a non-zero exit code, never a bare traceback.
"""

from __future__ import annotations

import sys

import click

from mssql2pg import __version__
from mssql2pg.errors import Mssql2pgError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mssql2pg")
def cli() -> None:
    """Replicate SQL Server tables into PostgreSQL from SQL Server CDC, exactly once."""


def _register() -> None:
    # Imported here, not at module level, so `mssql2pg --help` stays fast and import cycles stay away.
    from mssql2pg.demo.command import demo  # noqa: PLC0415
    from mssql2pg.dlq import dlq  # noqa: PLC0415
    from mssql2pg.emulator.cli import emulator  # noqa: PLC0415
    from mssql2pg.pipeline.check import check  # noqa: PLC0415
    from mssql2pg.pipeline.commands import run  # noqa: PLC0415
    from mssql2pg.pipeline.resync import resync  # noqa: PLC0415
    from mssql2pg.pipeline.status import status  # noqa: PLC0415

    cli.add_command(run)
    cli.add_command(check)
    cli.add_command(status)
    cli.add_command(resync)
    cli.add_command(demo)
    cli.add_command(dlq)
    cli.add_command(emulator)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        cli.main(args=argv, prog_name="mssql2pg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except Mssql2pgError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
