"""``mssql2pg schema``: the source schema changes the pipeline followed or holds for review
(``mssql2pg.schema_changes``, see docs/schema-evolution.md).

* ``schema list [--status S] [--json]``: one line per recorded change (or a JSON array);
* ``schema approve ID [--keep-column]``: after migrating the target as the change recommends (or, for a dropped
  column, dropping it or deciding to keep it), re-check and resume the table.

The work is :mod:`mssql2pg.schema_ops`. Exit code 1 when an approval is refused, 2 for a configuration or
connection problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mssql2pg.cli.options import config_option, load

if TYPE_CHECKING:
    from mssql2pg.control import StoredSchemaChange

STATUSES = ("auto-applied", "pending-review", "failed", "approved", "all")


@click.group("schema")
def command() -> None:
    """Source schema changes: list what the pipeline followed or holds for review; approve a reviewed one."""


@command.command("list")
@config_option
@click.option("--status", type=click.Choice(STATUSES), default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="a JSON array, one object per change, every field")
def list_command(config_path: Path | None, status: str, as_json: bool) -> None:
    """List the recorded schema changes of this pipeline, oldest first."""
    from mssql2pg.schema_ops import list_changes  # noqa: PLC0415 - start-up speed only (keeps `--help` fast)

    changes = list_changes(load(config_path), None if status == "all" else status)
    if as_json:
        click.echo(json.dumps([c.as_json() for c in changes], indent=2, ensure_ascii=False))
        return
    if not changes:
        click.echo("no schema changes recorded")
        return
    header = ("ID", "DETECTED", "TABLE", "CHANGE", "COLUMN", "TYPE", "STATUS", "DDL")
    lines = [header] + [
        (
            str(c.id),
            c.detected_at.strftime("%Y-%m-%d %H:%M:%S"),
            c.source_table,
            c.change,
            c.column_name or "-",
            _types(c),
            c.status,
            c.ddl or "-",
        )
        for c in changes
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1])


@command.command("approve")
@config_option
@click.argument("change_id", metavar="ID", type=int)
@click.option(
    "--keep-column",
    is_flag=True,
    help="a drop-column change: keep the target column on purpose (it receives NULL from now on)",
)
def approve_command(config_path: Path | None, change_id: int, keep_column: bool) -> None:
    """Re-check the target after a reviewed change and resume the table it paused."""
    from mssql2pg.schema_ops import approve_change  # noqa: PLC0415 - start-up speed only

    approval = approve_change(load(config_path), change_id, keep_column=keep_column)
    click.echo(approval.message)
    if not approval.approved:
        raise click.exceptions.Exit(1)


def _types(change: StoredSchemaChange) -> str:
    """The TYPE cell: ``old -> new``; a dropped column has no new type, so it reads ``old -> (dropped)``."""
    if change.change == "drop-column":
        return f"{change.old_type or '?'} -> (dropped)"
    if change.old_type or change.new_type:
        return f"{change.old_type or ''} -> {change.new_type or ''}"
    return "-"
