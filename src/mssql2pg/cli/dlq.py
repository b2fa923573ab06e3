"""``mssql2pg dlq``: inspect and act on the changes the target refused (``mssql2pg.dead_letters``).

* ``dlq list [--status pending|resolved|ignored|all]``: one line per dead letter of this pipeline;
* ``dlq show ID``: everything stored about one (the change, the error, the stack trace);
* ``dlq retry ID...``: re-apply the stored change (after fixing the target or the cause); resolved when it
  applies, otherwise it stays pending with the new error and one more retry counted;
* ``dlq ignore ID...``: mark it ignored (it stays for the record).

Every command reads the pipeline configuration (``--config``) to reach the target; the work is
:mod:`mssql2pg.deadletter_ops`. Exit code 1 when a retry or ignore did not succeed for some ID, 2 for a
configuration or connection problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mssql2pg.cli.options import config_option, load

if TYPE_CHECKING:
    from mssql2pg.control import StoredDeadLetter

STATUSES = ("pending", "resolved", "ignored", "all")
OPERATIONS = {1: "delete", 2: "insert", 3: "update(old key)", 4: "update"}


@click.group("dlq")
def command() -> None:
    """Dead letters: changes the target refused, with the reason. List, show, retry or ignore them."""


@command.command("list")
@config_option
@click.option("--status", type=click.Choice(STATUSES), default="pending", show_default=True)
@click.option("--limit", type=int, default=1000, show_default=True, help="at most this many (oldest first)")
def list_command(config_path: Path | None, status: str, limit: int) -> None:
    """List dead letters of this pipeline."""
    from mssql2pg.deadletter_ops import list_letters  # noqa: PLC0415 - start-up speed only (keeps `--help` fast)

    letters = list_letters(load(config_path), None if status == "all" else status, limit)
    if not letters:
        click.echo(f"no {'' if status == 'all' else status + ' '}dead letters")
        return
    header = ("ID", "TABLE", "COMMIT LSN", "OP", "STATUS", "ATTEMPTS", "ERROR")
    lines = [header] + [_summary(letter) for letter in letters]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1])


def _summary(letter: StoredDeadLetter) -> tuple[str, ...]:
    error = f"{letter.error_class}: {letter.message}"
    if letter.last_error:  # the letter's own class first (a conflict stays visible), then the retry's refusal
        error = f"{letter.error_class} (last retry: {letter.last_error})"
    error = error.replace("\n", " ")
    return (
        str(letter.id),
        letter.source_table,
        letter.commit_lsn,
        OPERATIONS.get(letter.operation or 0, str(letter.operation)),
        letter.status,
        str(letter.retry_count + 1),
        error if len(error) <= 100 else error[:97] + "...",
    )


@command.command("show")
@config_option
@click.argument("letter_id", metavar="ID", type=int)
def show_command(config_path: Path | None, letter_id: int) -> None:
    """Show everything stored about one dead letter."""
    from mssql2pg.deadletter_ops import get_letter  # noqa: PLC0415 - start-up speed only

    letter = get_letter(load(config_path), letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter with id {letter_id}")
    fields = [
        ("id", letter.id),
        ("status", letter.status),
        ("pipeline", letter.pipeline),
        ("table", letter.source_table),
        ("capture instance", letter.capture_instance),
        ("commit LSN", letter.commit_lsn),
        ("seqval", letter.change.get("seqval")),
        ("operation", f"{letter.operation} ({OPERATIONS.get(letter.operation or 0, '?')})"),
        ("source transaction", letter.source_tran_id.hex() if letter.source_tran_id else None),
        ("commit time", letter.change.get("commit_time")),
        ("first attempt", letter.first_attempt_at),
        ("last attempt", letter.last_attempt_at),
        ("attempts", letter.retry_count + 1),
        ("error class", letter.error_class),
        ("message", letter.message),
        ("last retry error", letter.last_error or "-"),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<20}{value}")
    click.echo("change:")
    click.echo(json.dumps(letter.change.get("values"), indent=2, ensure_ascii=False))
    click.echo("stack trace:")
    click.echo(letter.stack or "(none)")


@command.command("retry")
@config_option
@click.argument("letter_ids", metavar="ID...", type=int, nargs=-1, required=True)
def retry_command(config_path: Path | None, letter_ids: tuple[int, ...]) -> None:
    """Re-apply dead letters; each one applied is marked resolved."""
    from mssql2pg.deadletter_ops import retry_letters  # noqa: PLC0415 - start-up speed only

    outcomes = retry_letters(load(config_path), letter_ids)
    for letter_id, outcome in outcomes:
        click.echo(f"{letter_id}: {outcome.message}")
    if not all(outcome.resolved for _, outcome in outcomes):
        raise click.exceptions.Exit(1)


@command.command("ignore")
@config_option
@click.argument("letter_ids", metavar="ID...", type=int, nargs=-1, required=True)
def ignore_command(config_path: Path | None, letter_ids: tuple[int, ...]) -> None:
    """Mark pending dead letters as ignored."""
    from mssql2pg.deadletter_ops import ignore_letters  # noqa: PLC0415 - start-up speed only

    outcomes = ignore_letters(load(config_path), letter_ids)
    for letter_id, ignored in outcomes:
        click.echo(f"{letter_id}: ignored" if ignored else f"{letter_id}: not ignored (no such pending dead letter)")
    if not all(ignored for _, ignored in outcomes):
        raise click.exceptions.Exit(1)
