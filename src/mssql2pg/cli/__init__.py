"""The ``mssql2pg`` command line: the root group, ``main()``, and the one place where a failed command is told.

Each command is a module of this package exposing ``command`` (a ``click.Command`` or ``click.Group``); adding
one is adding a module and a line in :data:`COMMANDS`. Command modules hold click glue and output formatting
only; the work is done by the domain modules they call, which they import inside the command function so
that ``mssql2pg --help`` does not load SQLAlchemy, pydantic and the drivers.

Every command logs through the redacting logger: the root group sets it up before any command runs, and a
command that reads a configuration re-applies its level and format (:func:`mssql2pg.cli.options.load`).

Whatever ends a command other than a click exception (a configuration mistake, a database that is down, a
refused login, a terminal fault, a bug) is caught once, in :meth:`_Root.invoke`, and told in one line on
stderr with the database it concerns and what to do (:mod:`mssql2pg.cli.failures`); no traceback. Exit codes:
0 done, 1 a fault while working (or a check that failed), 2 a set-up problem (configuration, connection,
login), 130 interrupted, 141 (128 + SIGPIPE, as a shell reports for a Unix tool ended by it) when whoever read
stdout closed it first (``mssql2pg status | head -1``): no error line then, nothing failed but the reader left.
"""

from __future__ import annotations

import os
import select
import sys
from typing import IO, Any

import click

from mssql2pg import __version__
from mssql2pg.cli import check, demo, dlq, emulator, reconcile, resync, run, schema, status
from mssql2pg.cli.options import recorded_databases

COMMANDS = (run, check, status, dlq, resync, reconcile, schema, emulator, demo)

CLOSED_STDOUT_EXIT = 141
"""128 + SIGPIPE: what a shell reports for a tool that wrote to a pipe nobody reads any more."""


class StdoutClosedError(Exception):
    """The reader of stdout closed it (``| head -1``): the command ends quietly with :data:`CLOSED_STDOUT_EXIT`."""


def stdout_closed(exc: BaseException) -> bool:
    """Whether ``exc`` is a write to a stdout whose reader has gone. A ``BrokenPipeError`` alone does not tell
    (a database socket breaks the same way), so stdout itself is asked: a pipe or socket without a reader polls
    as an error or a hang-up."""
    if not isinstance(exc, BrokenPipeError):
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture): not a closed pipe
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail on the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class CommandFailedError(click.ClickException):
    """A command ended with a failure already put into one line (``error: ...``); exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, file=file, err=file is None)


class CommandFaultError(CommandFailedError):
    """The same, for a fault while working; exit code 1."""

    exit_code = 1


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if stdout_closed(exc):  # not a database failure: the reader of the output has gone
                raise StdoutClosedError from exc
            raise _failed(ctx, exc) from exc


def _failed(ctx: click.Context, exc: Exception) -> CommandFailedError:
    # Imported on the error path only, for start-up speed: explaining a failure loads the driver classifier.
    from mssql2pg.cli.failures import SET_UP, explain  # noqa: PLC0415
    from mssql2pg.observability.logging import get_logger  # noqa: PLC0415

    failure = explain(exc, recorded_databases(ctx))
    if failure.unexpected:  # a bug: keep the stack trace for the report, redacted like every log line
        get_logger("cli").error("command failed unexpectedly", exc_info=exc)
    return CommandFailedError(failure.line) if failure.exit_code == SET_UP else CommandFaultError(failure.line)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mssql2pg")
def cli() -> None:
    """Replicate SQL Server tables into PostgreSQL from SQL Server CDC, exactly once."""
    # Imported here for start-up speed only (`mssql2pg --help` does not run this).
    from mssql2pg.observability.logging import configure_logging  # noqa: PLC0415

    configure_logging("info", "auto", stream=sys.stderr)


for _module in COMMANDS:
    cli.add_command(_module.command)


def main(argv: list[str] | None = None) -> None:
    """The console script: run ``cli`` and exit with its code (see the module docstring)."""
    try:
        code = cli.main(args=argv, prog_name="mssql2pg", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except (StdoutClosedError, BrokenPipeError) as exc:
        if not isinstance(exc, StdoutClosedError) and not stdout_closed(exc):
            raise
        _quiet_stdout()
        sys.exit(CLOSED_STDOUT_EXIT)
    # Without standalone mode click returns the code of an Exit (`--version`, a failed `dlq retry`) instead of
    # exiting; a command that completes returns None.
    try:
        sys.stdout.flush()  # what is still buffered: a closed pipe shows here when the command wrote little
    except BrokenPipeError as exc:
        if not stdout_closed(exc):
            raise
        _quiet_stdout()
        sys.exit(CLOSED_STDOUT_EXIT)
    sys.exit(code if isinstance(code, int) else 0)
