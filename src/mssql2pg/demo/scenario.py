"""The scenario of ``mssql2pg demo``: the whole pipeline on a throwaway local PostgreSQL, in about a minute.

It starts a private PostgreSQL server (from the local binaries, 127.0.0.1 only, deleted afterwards), makes
two databases in it — ``shop`` with the SQL Server CDC emulator installed (the source) and ``dw`` (the
target) — creates three CDC-enabled tables, runs a random workload of inserts, updates, deletes and
multi-table transactions while the pipeline replicates, shows live progress, and ends by comparing every
row of source and target. Ctrl-C stops it cleanly. What it does is told through a :class:`Narrator`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

import pg8000.native
import yaml

from mssql2pg.demo.workload import TABLE_COLUMNS, TABLES, TOTAL_MONEY, Workload, create_schema, money_sum, table_rows
from mssql2pg.emulator import install
from mssql2pg.errors import TerminalError
from mssql2pg.localpg import LocalPostgres
from mssql2pg.pipeline.assembly import Pipeline


class Narrator(Protocol):
    """How the scenario tells what it does; the command line prints it (:mod:`mssql2pg.cli.demo`)."""

    def step(self, text: str) -> None:
        """A step, on a line of its own."""

    def progress(self, text: str) -> None:
        """Progress that replaces the previous progress line."""

    def done(self) -> None:
        """The progress line, if any, is finished."""


def run_demo(transactions: int, seed: int, stop: threading.Event, say: Narrator) -> bool:
    """Start the throwaway server, run the scenario in it, and remove it again (also when interrupted).
    True when the target matches the source exactly; :class:`TerminalError` when the pipeline did not catch up."""
    say.step("starting a throwaway PostgreSQL server (127.0.0.1, deleted afterwards)")
    server = LocalPostgres("demo")
    server.init()
    server.start()
    try:
        return _run_demo(server, transactions, seed, stop, say)
    finally:
        stop.set()
        server.destroy()


def _run_demo(server: LocalPostgres, transactions: int, seed: int, stop: threading.Event, say: Narrator) -> bool:
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
        raise TerminalError("the pipeline did not catch up within 120 s", hint="see the log above")
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


def _compare(server: LocalPostgres, source_db: str, target_db: str, say: Narrator) -> bool:
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
