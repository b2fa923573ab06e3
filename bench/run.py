"""`make bench`: end-to-end throughput, memory and lag, each next to a same-run baseline.

The machines are shared and noisy, so absolute numbers drift; every figure is printed next to a baseline
measured in the same run on the same servers: PostgreSQL alone ingesting the same rows (COPY into a staging
table, then a set-based upsert, all server-side work). Output is JSON lines on stdout.

Scenarios:
  a) one source transaction inserting 1,000,000 rows;
  b) 100,000 single-row source transactions;
  c) steady 1,000 transactions/minute while the pipeline runs: p50/p95 commit-to-visible lag;
  d) ``mssql2pg reconcile`` of a consistent 1,000,000-row table (rows/s), next to its own baseline: both servers
     doing nothing but count(*) and a sum of per-row MD5 hashes of the same rows, at the same time;
  e) scale-out: one backlog over six busy tables drained by 1, 2 and 3 processes, one table group each;
  f) the initial snapshot (``snapshot.mode: initial``) of a 1,000,000-row table whose rows predate CDC, next to
     the same COPY + upsert baseline as a);
  g) the fill of a column added with a per-row default in all 1,000,000 rows, next to the same baseline.
Scenarios a) to c) and e) measure streaming: they run with ``snapshot.mode: never`` (their rows are in the CDC
history).
The pipeline runs as a subprocess (`mssql2pg run --until-caught-up`, or `run` for the lag scenario).
Its memory is reported twice: ``peak_rss_mb`` is the kernel's peak (``VmHWM``) for the pipeline process itself, and
``peak_tree_rss_mb`` the highest sum over the pipeline and its reader process (``reader.separate_process``),
sampled from /proc every 50 ms - what the instance really needs.

Environment knobs: MSSQL2PG_BENCH_ROWS (default 1000000), MSSQL2PG_BENCH_TXNS (default 100000),
MSSQL2PG_BENCH_LAG_SECONDS (default 60), MSSQL2PG_BENCH_SCENARIOS (comma-separated subset of
one_transaction, single_row_transactions, updates, steady_lag, reconcile, scale_out, snapshot, column_fill;
default all).
The pipeline subprocess inherits the environment, so ``MSSQL2PG__READER__SEPARATE_PROCESS=false make bench``
measures the one-process reader.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pg8000.native
import yaml

from mssql2pg.config import load_config
from mssql2pg.emulator import install
from mssql2pg.localpg import LocalPostgres
from mssql2pg.observability.logging import configure_logging
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.column_fill import fill_rows
from mssql2pg.pipeline.connections import target_connector

ROWS = int(os.environ.get("MSSQL2PG_BENCH_ROWS", "1000000"))
TXNS = int(os.environ.get("MSSQL2PG_BENCH_TXNS", "100000"))
LAG_SECONDS = float(os.environ.get("MSSQL2PG_BENCH_LAG_SECONDS", "60"))
SCENARIOS = os.environ.get(
    "MSSQL2PG_BENCH_SCENARIOS",
    "one_transaction,single_row_transactions,updates,steady_lag,reconcile,scale_out,snapshot,column_fill",
)

TABLE_SQL = """CREATE TABLE dbo.items (
    id bigint PRIMARY KEY, name varchar(40) NOT NULL, qty int NOT NULL,
    price numeric(12,2) NOT NULL, created_at timestamp NOT NULL)"""


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def setup_source(server: LocalPostgres, db: str, before_cdc: str | None = None) -> pg8000.native.Connection:
    """The emulated source with ``dbo.items``; ``before_cdc``: SQL run before CDC is enabled on the table (rows
    only an initial snapshot can bring)."""
    url = server.url(db)
    install(url)
    conn = server.connect(db)
    conn.run("CREATE SCHEMA IF NOT EXISTS dbo")
    conn.run(TABLE_SQL)
    if before_cdc is not None:
        conn.run(before_cdc)
    conn.run("CALL sys.sp_cdc_enable_db()")
    conn.run("CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'items', role_name => NULL)")
    return conn


def baseline_copy_upsert(server: LocalPostgres, rows: int) -> float:
    """PostgreSQL alone: COPY `rows` rows into staging and upsert them into a keyed table. Returns seconds."""
    db = server.create_database("baseline")
    conn = server.connect(db)
    conn.run(
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(40), qty int, price numeric(12,2), "
        "created_at timestamp, _lsn bytea, _op smallint)"
    )
    payload = io.BytesIO(
        "".join(
            f"{i}\titem-{i}\t{i % 100}\t{i % 1000}.25\t2026-01-01 00:00:00\t\\\\x00\t2\n" for i in range(rows)
        ).encode()
    )
    started = time.perf_counter()
    conn.run("BEGIN")
    conn.run("CREATE TEMP TABLE stage (LIKE items) ON COMMIT DROP")
    conn.run("COPY stage FROM STDIN", stream=payload)
    conn.run(
        "INSERT INTO items SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, "
        "qty = EXCLUDED.qty, price = EXCLUDED.price, created_at = EXCLUDED.created_at"
    )
    conn.run("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def write_config(path: Path, source_url: str, target_url: str, snapshot: str = "never", *, fill: bool = True) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "source": {"url": source_url},
                "target": {"url": target_url},
                "tables": ["dbo.items"],
                "reader": {"poll_interval": 0.05},
                "snapshot": {"mode": snapshot},
                "schema_evolution": {"fill_added_columns": fill},
                "http": {"port": 0},
                "log": {"format": "json", "level": "warning"},
            }
        ),
        encoding="utf-8",
    )
    return path


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and its children (one level: the pipeline and its reader process)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            pid, ppid = int(entry.name), int(stat.rsplit(")", 1)[1].split()[1])
            if root in (pid, ppid):
                total += int((entry / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
    return total


def _high_water(pid: int) -> int:
    """The kernel's peak resident bytes of ``pid`` since its exec (``VmHWM``); 0 once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeRss:
    """Samples :func:`_tree_rss` and the root's ``VmHWM`` in a thread until stopped; keeps the peaks.

    ``VmHWM`` rather than ``ru_maxrss`` for the process itself: ``ru_maxrss`` also counts the moments between
    fork and exec, when the child is still a copy of this (large, after generating a million rows) benchmark
    process, and reported 199 MB for a pipeline that never went above 93 MB."""

    def __init__(self, root: int) -> None:
        self.peak = 0
        self.root_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(root,), daemon=True)
        self._thread.start()

    def _sample(self, root: int) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _tree_rss(root))
            self.root_peak = max(self.root_peak, _high_water(root))

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.root_peak, self.peak


def run_until_caught_up(config: Path) -> tuple[float, int, int]:
    """Run the pipeline subprocess to the current max LSN.

    Returns (seconds, peak RSS bytes of that child, peak sum of RSS bytes over it and its children), both
    sampled every 50 ms (see :class:`TreeRss`)."""
    log = config.with_suffix(".log")
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mssql2pg", "run", "--config", str(config), "--until-caught-up"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        tree = TreeRss(proc.pid)
        proc.wait()
        root_peak, tree_peak = tree.stop()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"pipeline failed (exit {proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
    return elapsed, root_peak, tree_peak


def count(server: LocalPostgres, db: str, sql: str) -> int:
    conn = server.connect(db)
    try:
        return int(conn.run(sql)[0][0])
    finally:
        conn.close()


def _throughput(
    name: str,
    rows: int,
    load: str | list[str],
    *,
    source: LocalPostgres,
    target: LocalPostgres,
    workdir: Path,
    changes: int | None = None,
) -> None:
    """Load ``rows`` into the source with the SQL ``load``, drain them with the pipeline, and compare to the
    PostgreSQL-alone baseline of the same number of rows. ``changes``: the load makes this many changes (updates
    and deletes too), leaving ``rows`` rows; rates are per change then."""
    rows_changed = rows if changes is None else changes
    sdb, tdb = source.create_database("src"), target.create_database("dw")
    conn = setup_source(source, sdb)
    started = time.perf_counter()
    for statement in [load] if isinstance(load, str) else load:  # a DO block that COMMITs must stand alone
        conn.run(statement)
    capture_s = time.perf_counter() - started
    conn.close()
    config = write_config(workdir / f"{name}.yaml", source.url(sdb), target.url(tdb))
    seconds, rss, tree_rss = run_until_caught_up(config)
    arrived = count(target, tdb, "SELECT count(*) FROM dbo.items")
    base = baseline_copy_upsert(target, rows_changed)
    emit(
        scenario=name,
        rows=rows,
        changes=rows_changed,
        rows_arrived=arrived,
        pipeline_seconds=round(seconds, 2),
        pipeline_rows_per_s=round(rows_changed / seconds),
        baseline_seconds=round(base, 2),
        baseline_rows_per_s=round(rows_changed / base),
        ratio_to_baseline=round(base / seconds, 3),
        peak_rss_mb=round(rss / 2**20, 1),
        peak_tree_rss_mb=round(tree_rss / 2**20, 1),
        source_capture_seconds=round(capture_s, 2),
    )


def scenario_big_transaction(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    """One source transaction inserting ROWS rows (one multi-row statement)."""
    n = int(ROWS)  # integers we own, so they can be spelled into the SQL
    load = (
        "INSERT INTO dbo.items SELECT g, 'item-' || g, g % 100, (g % 1000) + 0.25, localtimestamp "
        f"FROM generate_series(1, {n}) g"
    )
    _throughput("one_transaction", n, load, source=source, target=target, workdir=workdir)


def scenario_small_transactions(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    """TXNS single-row source transactions (a server-side loop committing after every insert)."""
    n = int(TXNS)
    load = f"""DO $$ BEGIN FOR i IN 1..{n} LOOP
        INSERT INTO dbo.items VALUES (i, 'item-' || i, i % 100, (i % 1000) + 0.25, localtimestamp);
        COMMIT; END LOOP; END $$"""
    _throughput("single_row_transactions", n, load, source=source, target=target, workdir=workdir)


def scenario_updates(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    """An update-heavy OLTP mix: ROWS/4 rows inserted in one transaction, then every row updated twice and every
    tenth deleted, in source transactions of 100 rows each (the applier's general path: last change per key,
    deletes, and the detection of writes to the target by others)."""
    n = int(ROWS) // 4 // 100 * 100  # whole batches of 100; integers we own, spelled into the SQL
    batches = n // 100
    insert = (
        "INSERT INTO dbo.items SELECT g, 'item-' || g, g % 100, (g % 1000) + 0.25, localtimestamp "
        f"FROM generate_series(1, {n}) g"
    )
    changes = f"""
        DO $$ BEGIN
          FOR round IN 1..2 LOOP FOR b IN 0..{batches - 1} LOOP
            UPDATE dbo.items SET qty = qty + 1, name = 'updated-' || id WHERE id BETWEEN b * 100 + 1 AND b * 100 + 100;
            COMMIT;
          END LOOP; END LOOP;
          FOR b IN 0..{batches // 10 - 1} LOOP
            DELETE FROM dbo.items WHERE id BETWEEN b * 1000 + 1 AND b * 1000 + 1000 AND id % 10 = 0;
            COMMIT;
          END LOOP;
        END $$"""
    deleted = batches // 10 * 100
    _throughput(
        "updates",
        n - deleted,
        [insert, changes],
        source=source,
        target=target,
        workdir=workdir,
        changes=3 * n + deleted,
    )


def scenario_snapshot(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    """The initial snapshot of a ROWS-row table written before CDC was enabled (no change table holds them)."""
    n = int(ROWS)
    load = (
        "INSERT INTO dbo.items SELECT g, 'item-' || g, g % 100, (g % 1000) + 0.25, localtimestamp "
        f"FROM generate_series(1, {n}) g"
    )
    sdb, tdb = source.create_database("src"), target.create_database("dw")
    setup_source(source, sdb, before_cdc=load).close()
    config = write_config(workdir / "snapshot.yaml", source.url(sdb), target.url(tdb), snapshot="initial")
    seconds, rss, tree_rss = run_until_caught_up(config)
    arrived = count(target, tdb, "SELECT count(*) FROM dbo.items")
    base = baseline_copy_upsert(target, n)
    emit(
        scenario="snapshot",
        rows=n,
        rows_arrived=arrived,
        pipeline_seconds=round(seconds, 2),
        pipeline_rows_per_s=round(n / seconds),
        baseline_seconds=round(base, 2),
        baseline_rows_per_s=round(n / base),
        ratio_to_baseline=round(base / seconds, 3),
        peak_rss_mb=round(rss / 2**20, 1),
        peak_tree_rss_mb=round(tree_rss / 2**20, 1),
    )


def scenario_column_fill(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    """g) The fill after ``ALTER TABLE ... ADD COLUMN`` with a per-row default (``random()``, standing for
    ``newid()``): every one of ROWS rows holds a value no change table carries, so the pipeline sets each from the
    source table (``pipeline/column_fill.py``). Timed in this process, as the filler runs it: read by key, COPY,
    UPDATE under the table lock, page by page."""
    n = int(ROWS)
    load = (
        "INSERT INTO dbo.items SELECT g, 'item-' || g, g % 100, (g % 1000) + 0.25, localtimestamp "
        f"FROM generate_series(1, {n}) g"
    )
    sdb, tdb = source.create_database("src"), target.create_database("dw")
    conn = setup_source(source, sdb, before_cdc=load)
    # the runs below leave the fill to this scenario (a run --until-caught-up would fill at its end)
    config = write_config(workdir / "fill.yaml", source.url(sdb), target.url(tdb), snapshot="initial", fill=False)
    run_until_caught_up(config)
    conn.run("ALTER TABLE dbo.items ADD COLUMN note int DEFAULT (random() * 1000)::int")
    conn.run(
        "CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'items', role_name => NULL, "
        "capture_instance => 'dbo_items_v2')"
    )
    conn.run("INSERT INTO dbo.items VALUES (0, 'after', 0, 0, localtimestamp, 0)")  # the new instance's first change
    conn.close()
    run_until_caught_up(config)  # the switch: the target column added, the checkpoint past the new start
    loaded = load_config(config)
    configure_logging("WARNING", "json", stream=sys.stderr)  # stdout carries the figures only
    pipeline = Pipeline.from_config(loaded)
    try:
        (table,) = pipeline.tables
        note = [c for c in table.columns if c.name == "note"]
        started = time.perf_counter()
        filled = fill_rows(pipeline.engine, target_connector(loaded), table, table.capture_instance, note)
        seconds = time.perf_counter() - started
    finally:
        pipeline.engine.dispose()
    unset = count(target, tdb, "SELECT count(*) FROM dbo.items WHERE note IS NULL")
    base = baseline_copy_upsert(target, n)
    emit(
        scenario="column_fill",
        rows=n,
        rows_read=filled.read,
        rows_set=filled.updated,
        rows_left_unset=unset,
        fill_seconds=round(seconds, 2),
        fill_rows_per_s=round(filled.read / seconds),
        baseline_seconds=round(base, 2),
        baseline_rows_per_s=round(n / base),
        ratio_to_baseline=round(base / seconds, 3),
    )


def scenario_lag(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    sdb, tdb = source.create_database("src"), target.create_database("dw")
    conn = setup_source(source, sdb)
    config = write_config(workdir / "c.yaml", source.url(sdb), target.url(tdb))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mssql2pg", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        interval = 60.0 / 1000
        deadline = time.monotonic() + LAG_SECONDS
        i = 0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            i += 1
            conn.run("INSERT INTO dbo.items VALUES (:i, 'lag', 1, 1, localtimestamp)", i=i)
            next_at += interval
            threading.Event().wait(max(0.0, next_at - time.monotonic()))
        tconn = target.connect(tdb)
        end = time.monotonic() + 60
        while time.monotonic() < end and int(tconn.run("SELECT count(*) FROM dbo.items")[0][0]) < i:
            threading.Event().wait(0.1)
        lags = [
            float(r[0])
            for r in tconn.run("SELECT extract(epoch FROM _cdc_applied_at - _cdc_commit_time) FROM dbo.items")
        ]
        tconn.close()
    finally:
        proc.terminate()
        proc.wait(60)
    lags.sort()
    emit(
        scenario="steady_1000_tx_per_min",
        transactions=i,
        rows_arrived=len(lags),
        lag_p50_s=round(statistics.median(lags), 3),
        lag_p95_s=round(lags[int(0.95 * (len(lags) - 1))], 3),
        lag_max_s=round(lags[-1], 3),
    )


def baseline_count_and_checksum(servers: list[tuple[LocalPostgres, str]]) -> float:
    """Both servers at once: count(*) and a sum of 56-bit MD5 hashes of each row's text, nothing else."""
    sql = "SELECT count(*), sum(('x' || substr(md5(t::text), 1, 14))::bit(56)::bigint) FROM dbo.items t"

    def one(server: LocalPostgres, db: str) -> None:
        conn = server.connect(db)
        try:
            conn.run(sql)
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=pair) for pair in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def scenario_reconcile(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    """A consistent ROWS-row table: ``mssql2pg reconcile`` (as users run it) against the checksum baseline."""
    n = int(ROWS)
    sdb, tdb = source.create_database("src"), target.create_database("dw")
    conn = setup_source(source, sdb)
    conn.run(
        "INSERT INTO dbo.items SELECT g, 'item-' || g, g % 100, (g % 1000) + 0.25, localtimestamp "
        f"FROM generate_series(1, {n}) g"
    )
    conn.close()
    config = write_config(workdir / "reconcile.yaml", source.url(sdb), target.url(tdb))
    run_until_caught_up(config)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mssql2pg", "reconcile", "--config", str(config), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"reconcile exited {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (table,) = json.loads(result.stdout)["tables"]
    base = baseline_count_and_checksum([(source, sdb), (target, tdb)])
    emit(
        scenario="reconcile_consistent",
        rows=n,
        status=table["status"],
        reconcile_seconds=round(seconds, 2),
        reconcile_rows_per_s=round(n / seconds),
        baseline_seconds=round(base, 2),
        baseline_rows_per_s=round(n / base),
        ratio_to_baseline=round(base / seconds, 3),
    )


SCALE_TABLES = 6


def _scale_out_source(source: LocalPostgres, transactions: int) -> str:
    """A source with SCALE_TABLES busy tables dbo.busy_0..5 and ``transactions`` small transactions (10 rows of one
    table each, the tables in turn), committed before the pipelines start. Returns the database name."""
    db = source.create_database("src")
    install(source.url(db))
    conn = source.connect(db)
    conn.run("CREATE SCHEMA IF NOT EXISTS dbo")
    conn.run("CALL sys.sp_cdc_enable_db()")
    for t in range(SCALE_TABLES):
        conn.run(TABLE_SQL.replace("dbo.items", f"dbo.busy_{t}"))
        conn.run(f"CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'busy_{t}', role_name => NULL)")
    n = int(transactions)
    conn.run(f"""DO $$ BEGIN FOR i IN 0..{n - 1} LOOP
        EXECUTE format('INSERT INTO dbo.busy_%s SELECT g, %L, g %% 100, (g %% 1000) + 0.25, localtimestamp
                        FROM generate_series(%s, %s) g', i % {SCALE_TABLES}, 'item-' || i, i * 10, i * 10 + 9);
        COMMIT; END LOOP; END $$""")
    conn.close()
    return db


def scenario_scale_out(source: LocalPostgres, target: LocalPostgres, workdir: Path) -> None:
    """Issue 16 point 7: the same backlog (TXNS/10 transactions of 10 rows over six busy tables) drained by 1, 2
    and 3 processes, the tables split into as many groups, each process started for its group with
    ``--until-caught-up``; the time is until the last one is done. Next to the same-run COPY+upsert baseline of
    the same rows, and as a speed-up over one process. On a 2-CPU machine the source, the target and every
    pipeline share the same two CPUs, so this shows the overhead of splitting more than any gain."""
    transactions = max(SCALE_TABLES, int(TXNS) // 10)
    rows = transactions * 10
    base = baseline_copy_upsert(target, rows)
    single: float | None = None
    for instances in (1, 2, 3):
        sdb, tdb = _scale_out_source(source, transactions), target.create_database("dw")
        config = write_config(workdir / f"scale_{instances}.yaml", source.url(sdb), target.url(tdb))
        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
        settings["tables"] = [{"name": f"dbo.busy_{t}", "group": f"g{t % instances}"} for t in range(SCALE_TABLES)]
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "mssql2pg", "run", "--config", str(config), "--until-caught-up"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "MSSQL2PG__PIPELINE__GROUP": f"g{i}"},
            )
            for i in range(instances)
        ]
        codes = [proc.wait() for proc in procs]
        seconds = time.perf_counter() - started
        if any(codes):
            raise SystemExit(f"scale-out with {instances} processes: exit codes {codes}")
        arrived = sum(count(target, tdb, f"SELECT count(*) FROM dbo.busy_{t}") for t in range(SCALE_TABLES))
        single = single or seconds
        emit(
            scenario=f"scale_out_{instances}_instances",
            rows=rows,
            transactions=transactions,
            rows_arrived=arrived,
            pipeline_seconds=round(seconds, 2),
            pipeline_rows_per_s=round(rows / seconds),
            baseline_seconds=round(base, 2),
            ratio_to_baseline=round(base / seconds, 3),
            speedup_over_one_instance=round(single / seconds, 2),
        )


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="mssql2pg-bench-"))
    source, target = LocalPostgres("bench-source"), LocalPostgres("bench-target")
    for server in (source, target):
        server.init()
        server.start()
    try:
        emit(
            event="bench_start",
            rows=ROWS,
            transactions=TXNS,
            lag_seconds=LAG_SECONDS,
            cpus=os.cpu_count(),
            scenarios=SCENARIOS,
            separate_process=os.environ.get("MSSQL2PG__READER__SEPARATE_PROCESS", "default"),
        )
        scenarios = {
            "one_transaction": scenario_big_transaction,
            "single_row_transactions": scenario_small_transactions,
            "steady_lag": scenario_lag,
            "reconcile": scenario_reconcile,
            "scale_out": scenario_scale_out,
            "snapshot": scenario_snapshot,
            "updates": scenario_updates,
            "column_fill": scenario_column_fill,
        }
        chosen = [name.strip() for name in SCENARIOS.split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(scenarios))
        if unknown:
            raise SystemExit(f"MSSQL2PG_BENCH_SCENARIOS: unknown {unknown}; choose from {sorted(scenarios)}")
        for name in chosen:
            scenarios[name](source, target, workdir)
    finally:
        source.destroy()
        target.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
