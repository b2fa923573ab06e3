"""``mssql2pg emulator install|agent``."""

from __future__ import annotations

import click


@click.group()
def emulator() -> None:
    """Install and drive the SQL Server CDC emulator in a PostgreSQL database."""


@emulator.command()
@click.option("--url", required=True, help="postgresql://user@host:port/db to install into")
def install(url: str) -> None:
    """Install SQL Server's CDC surface (schemas cdc and sys) into a PostgreSQL database; idempotent."""
    raise click.ClickException("not implemented yet")
