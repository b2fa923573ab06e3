"""What every command shares: the ``--config`` option, reading the configuration, and setting up the logger.

The root group sets up the redacting logger before any command runs. A command that reads a configuration
does it through :func:`load`, never ``load_config`` itself: that applies the configured log level and format,
keeps the configuration's secrets out of every log line, and tells the failure handler in :mod:`mssql2pg.cli`
which databases the command talks to, so that a failed connection names the right one. The emulator's
commands, which take a URL instead of a configuration, declare it with :func:`use_database`.

Where logs go: ``run`` is a service and logs to stdout (one JSON object per line, for the log collector);
every other command prints its result on stdout (``status --json`` is read by programs), so its logs go to
stderr (``demo`` shows warnings between its steps, on stdout).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import unquote, urlsplit

import click

if TYPE_CHECKING:
    from mssql2pg.config import Config

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="pipeline YAML file (MSSQL2PG__SECTION__KEY environment variables override it; without it, the "
    "configuration comes from the environment alone)",
)

DATABASES_KEY = "mssql2pg.databases"
"""Key in ``click.Context.meta`` (shared by all nested contexts) under which the databases of the running
command are recorded."""


@dataclass(frozen=True)
class Database:
    """A database a command talks to, as an error message names it."""

    role: str
    """``source``, ``target`` or ``emulator``."""
    url: str
    """The URL with the password masked."""
    setting: str
    """Where the user sets it: ``source.url``, ``target.url``, ``--url``."""


def load(config_path: Path | None, *, log_stream: TextIO | None = None) -> Config:
    """Read the configuration, log through the redacting logger at its level and format (to ``log_stream``,
    stderr by default), never log its secrets, and record its databases for the failure handler."""
    # Imported here, not at module level, so that `mssql2pg --help` does not load pydantic, SQLAlchemy and
    # the drivers (start-up speed only; there is no import cycle).
    from mssql2pg.config import load_config  # noqa: PLC0415
    from mssql2pg.observability.logging import configure_logging, register_secrets  # noqa: PLC0415

    config = load_config(config_path)
    register_secrets(config.secrets())
    configure_logging(config.log.level, config.log.format, stream=log_stream or sys.stderr)
    _record(
        Database("source", config.source.redacted_url(), "source.url"),
        Database("target", config.target.redacted_url(), "target.url"),
    )
    return config


def use_database(url: str, role: str = "emulator", setting: str = "--url") -> None:
    """Declare the one database a command without a configuration talks to (``url`` as the user gave it):
    its password is never logged, and a failed connection names it."""
    # Imported here for start-up speed only (see load).
    from mssql2pg.redact import redact_text, register_secret  # noqa: PLC0415

    password = urlsplit(url).password
    register_secret(unquote(password) if password else None)
    _record(Database(role, redact_text(url), setting))


def _record(*databases: Database) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[DATABASES_KEY] = databases


def recorded_databases(ctx: click.Context) -> tuple[Database, ...]:
    """The databases the running command declared (none before it read its configuration)."""
    databases: tuple[Database, ...] = ctx.meta.get(DATABASES_KEY, ())
    return databases
