"""``mssql2pg reconcile [TABLE ...]``: run :func:`mssql2pg.reconcile.run.reconcile` and print its report.

The output and the exit status are a contract for scripts, cron and CI (``docs/reconciliation.md``):
``--format json`` prints one JSON document on stdout; exit 0 when every table is consistent, 1 when any is
not, 2 when a table could not be compared (or a database could not be reached, told in one line by
:mod:`mssql2pg.cli` like in every command).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from mssql2pg.cli.options import config_option, load

if TYPE_CHECKING:
    from mssql2pg.reconcile.run import TableReport

DEFAULT_MAX_KEYS = 100
"""The same as :data:`mssql2pg.reconcile.run.DEFAULT_MAX_KEYS`, written out so ``--help`` loads nothing."""
DEFAULT_SETTLE_SECONDS = 30.0

EXIT_CONSISTENT, EXIT_INCONSISTENT, EXIT_ERROR = 0, 1, 2


@click.command("reconcile")
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--max-keys",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_KEYS,
    show_default=True,
    help="list at most this many keys per kind and table (the totals are always reported)",
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=DEFAULT_SETTLE_SECONDS,
    show_default=True,
    help="seconds to wait for the pipeline to apply what the source had before differing keys are re-checked",
)
@click.option(
    "--repair",
    is_flag=True,
    help="rewrite each differing key from the source (one locked target transaction per table), then re-check",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also write the result as Prometheus metrics to this file (for node_exporter's textfile collector)",
)
@click.argument("tables", nargs=-1)
def command(  # click passes every option by name
    config_path: Path | None,
    *,
    fmt: str,
    max_keys: int,
    settle: float,
    repair: bool,
    metrics_file: Path | None,
    tables: tuple[str, ...],
) -> None:
    """Prove that the target matches the source, and name every differing key (default: every table)."""
    # Imported here for start-up speed only (keeps `--help` fast).
    from mssql2pg.reconcile.export import write_metrics_file  # noqa: PLC0415
    from mssql2pg.reconcile.run import Settings, reconcile  # noqa: PLC0415

    config = load(config_path)
    stderr = sys.stderr
    try:
        reports = reconcile(
            config,
            tables,
            Settings(settle_seconds=settle, max_keys=max_keys, repair=repair),
            progress=progress_display(stderr),
        )
    finally:
        clear_progress(stderr)
    if metrics_file is not None:
        write_metrics_file(metrics_file, reports)
    if fmt == "json":
        click.echo(json.dumps(document(config.pipeline.name, reports, max_keys), indent=2))
    else:
        _print_table(reports, max_keys)
    raise click.exceptions.Exit(exit_status(reports))


class _Terminal(Protocol):
    def isatty(self) -> bool: ...
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


_CLEAR_LINE = "\r\x1b[K"


def progress_display(stream: _Terminal) -> Callable[[str], None] | None:
    """One line, rewritten in place, naming the table and phase, on a terminal only (never in a pipe or a log)."""
    if not stream.isatty():
        return None

    def show(text: str) -> None:
        stream.write(f"\r{text}\x1b[K")
        stream.flush()

    return show


def clear_progress(stream: _Terminal) -> None:
    """Remove the progress line before the report is printed."""
    if stream.isatty():
        stream.write(_CLEAR_LINE)
        stream.flush()


def exit_status(reports: list[TableReport]) -> int:
    """2 if any table could not be compared, else 1 if any differs, else 0."""
    if any(r.status == "error" for r in reports):
        return EXIT_ERROR
    return EXIT_INCONSISTENT if any(r.status == "inconsistent" for r in reports) else EXIT_CONSISTENT


def document(pipeline: str, reports: list[TableReport], max_keys: int) -> dict[str, Any]:
    """The JSON document of ``--format json``."""
    return {
        "pipeline": pipeline,
        "consistent": all(r.status == "consistent" for r in reports),
        "max_keys": max_keys,
        "tables": [r.as_json(max_keys) for r in reports],
    }


def _print_table(reports: list[TableReport], max_keys: int) -> None:
    click.echo(f"{'table':<30} {'status':<13} {'source':>10} {'target':>10} {'missing':>8} {'extra':>8} {'differ':>8}")
    for r in reports:
        click.echo(
            f"{r.table!s:<30} {r.status:<13} {r.source_rows:>10} {r.target_rows:>10} "
            f"{len(r.missing):>8} {len(r.extra):>8} {len(r.different):>8}"
        )
        if r.error:
            click.echo(f"    error: {r.error}")
        for label, keys in (("missing", r.missing), ("extra", r.extra), ("different", r.different)):
            if keys:
                shown = ", ".join(json.dumps(k) for k in keys[:max_keys])
                more = f" (+{len(keys) - max_keys} more)" if len(keys) > max_keys else ""
                click.echo(f"    {label}: {shown}{more}")
        if r.repaired:
            click.echo(
                f"    repaired {r.repaired} key{'' if r.repaired == 1 else 's'}: "
                + ", ".join(json.dumps(k) for k in r.repaired_keys[:max_keys])
            )
        if r.status != "consistent":
            click.echo(f"    do: {r.suggested_action}")
