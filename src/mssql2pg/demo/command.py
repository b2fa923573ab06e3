"""``mssql2pg demo``: the whole pipeline on a throwaway local PostgreSQL, in about a minute.

It starts a private PostgreSQL server (from the local binaries, 127.0.0.1 only, deleted afterwards), makes
two databases in it — ``shop`` with the SQL Server CDC emulator installed (the source) and ``dw`` (the
target) — creates three CDC-enabled tables, runs a random workload of inserts, updates, deletes and
multi-table transactions while the pipeline replicates, shows live progress, and ends by comparing every
row of source and target. Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

import click
import pg8000.native
import yaml

from mssql2pg.demo.workload import TABLE_COLUMNS, TABLES, TOTAL_MONEY, Workload, create_schema, money_sum, table_rows
from mssql2pg.localpg import LocalPostgres
from mssql2pg.observability.logging import configure_logging


@click.command()
@click.option("--transactions", default=3000, show_default=True, help="source transactions to run")
@click.option("--seed", type=int, default=None, help="workload seed (random if omitted; printed)")
def demo(transactions: int, seed: int | None) -> None:
    """Run the pipeline end to end on a throwaway local PostgreSQL (SQL Server CDC emulated)."""
    seed = seed if seed is not None else random.randrange(1 << 30)  # noqa: S311 - not cryptographic
    configure_logging("warning", "console")
    say = _Printer()
    say.step("starting a throwaway PostgreSQL server (127.0.0.1, deleted afterwards)")
    server = LocalPostgres("demo")
    server.init()
    server.start()
    stop = threading.Event()
    try:
        ok = _run_demo(server, transactions, seed, stop, say)
    except KeyboardInterrupt:
        stop.set()
        say.done()
        click.echo("\ninterrupted: stopping the pipeline and removing the throwaway server", err=True)
        sys.exit(130)
    finally:
        stop.set()
        server.destroy()
    if not ok:
        raise click.ClickException("the target does NOT match the source (this is a bug: please report it)")
    say.step("target matches source exactly ✔")


def _run_demo(server: LocalPostgres, transactions: int, seed: int, stop: threading.Event, say: _Printer) -> bool:
    from mssql2pg.emulator import install  # noqa: PLC0415 - heavy imports only when the demo runs
    from mssql2pg.pipeline.assembly import Pipeline  # noqa: PLC0415

    source_db = server.create_database(name="shop")
    target_db = server.create_database(name="dw")
    say.step(f"installing the SQL Server CDC emulator into {source_db!r}; creating 3 CDC-enabled tables")
    install(server.url(source_db))
    src = server.connect(source_db)
    create_schema(src)
    pipeline = Pipeline.from_config_file(_write_config(server, source_db, target_db))
    say.step(f"running {transactions} source transactions (seed {seed}) while the pipeline replicates")
    runner_thread = threading.Thread(target=pipeline.run, args=(stop,), name="pipeline", daemon=True)
    runner_thread.start()
    workload = Workload(src, seed)
    started = last_print = time.monotonic()
    for done in range(1, transactions + 1):
        workload.step()
        if time.monotonic() - last_print > 0.25 or done == transactions:
            last_print = time.monotonic()
            say.progress(_progress_line(done, transactions, pipeline, last_print - started))
    say.done()
    say.step("workload finished; waiting for the pipeline to catch up")
    caught_up = pipeline.wait_caught_up(timeout=120)
    stop.set()
    runner_thread.join(30)
    if not caught_up:
        raise click.ClickException("the pipeline did not catch up within 120 s; see the log above")
    ok = _compare(server, source_db, target_db, say)
    stats = pipeline.stats
    say.step(
        f"replicated {stats.transactions} transactions, {stats.rows} change rows in "
        f"{time.monotonic() - started:.1f} s; {workload.rolled_back} rolled-back transactions never appeared"
    )
    return ok


def _write_config(server: LocalPostgres, source_db: str, target_db: str) -> Path:
    path = Path(server.base) / "pipeline.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": server.url(source_db)},
                "target": {"url": server.url(target_db)},
                "tables": list(TABLES),
                "reader": {"poll_interval": 0.1},
                "http": {"enabled": False},
                "log": {"format": "console", "level": "warning"},
            }
        ),
        encoding="utf-8",
    )
    return path


def _progress_line(done: int, total: int, pipeline: object, elapsed: float) -> str:
    stats = getattr(pipeline, "stats", None)
    applied = getattr(stats, "transactions", 0)
    rows = getattr(stats, "rows", 0)
    rate = rows / elapsed if elapsed > 0 else 0.0
    return f"source: {done}/{total} transactions | target: {applied} transactions, {rows} rows ({rate:,.0f} rows/s)"


def _compare(server: LocalPostgres, source_db: str, target_db: str, say: _Printer) -> bool:
    src: pg8000.native.Connection = server.connect(source_db)
    dst: pg8000.native.Connection = server.connect(target_db)
    ok = True
    try:
        for table in TABLES:
            expected = table_rows(src, table, TABLE_COLUMNS[table])
            actual = table_rows(dst, table, TABLE_COLUMNS[table])
            same = expected == actual
            ok &= same
            say.step(
                f"  {table:<16} source {len(expected):>6} rows   target {len(actual):>6} rows   "
                f"{'identical' if same else 'DIFFERENT'}"
            )
        total = money_sum(dst)
        ok &= total == TOTAL_MONEY
        say.step(f"  invariant sum(balance)+sum(total) = {total} (expected {TOTAL_MONEY})")
    finally:
        src.close()
        dst.close()
    return ok


class _Printer:
    """Progress on one rewritten line on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.open_line = False

    def step(self, text: str) -> None:
        self.done()
        click.echo(f"» {text}")

    def progress(self, text: str) -> None:
        if self.tty:
            click.echo(f"\r  {text}\033[K", nl=False)
            self.open_line = True

    def done(self) -> None:
        if self.open_line:
            click.echo()
            self.open_line = False
