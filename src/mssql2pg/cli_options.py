"""Options several commands share, defined once so their spelling and help never drift apart."""

from __future__ import annotations

from pathlib import Path

import click

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="pipeline YAML file (MSSQL2PG__SECTION__KEY environment variables override it; without it, the "
    "configuration comes from the environment alone)",
)
