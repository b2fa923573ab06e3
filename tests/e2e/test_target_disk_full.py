"""Target disk full, for real (issue 17 point 2): the replicated tables live in a tablespace on a small tmpfs
this test mounts; the test fills it until the apply fails with PostgreSQL's own ENOSPC (SQLSTATE 53100).

Expected, and asserted: the pipeline stays up, pauses and retries with backoff (``mssql2pg_retries_total``
grows), ``/readyz`` shows the target degraded with the cause first and turns unhealthy after
``retry.alert_after`` (the alert condition), the log says "target disk full: free space" with the server's
message, the source transaction that did not fit is not half-applied (none of its rows is in the target), and
once the test frees the space replication resumes by itself and the target equals the source exactly. The
time from freeing the space to "target equals source" is printed (``-s``) and kept in docs/reliability.md.

Needs root (mount) and a kernel that lets this container mount tmpfs; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mssql2pg.emulator import connect
from mssql2pg.localpg import free_port
from tests.e2e.pipeline_process import PipelineProcess, write_config
from tests.e2e.test_outages import readiness, report
from tests.fixtures.emulator import enable_table
from tests.fixtures.pg import PgServer
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FS_SIZE = "24m"
BIG_ROWS = 3000  # ~2 MB of rows in ONE source transaction: more than any free page can hold
PAD = "repeat(md5(random()::text) || md5(random()::text), 11)"  # 704 characters, stored inline (below TOAST)


@pytest.fixture
def small_fs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of ``FS_SIZE`` (or the test function's ``fs_size``) mounted for this test and unmounted afterwards
    (after the server on it stopped: request it before the server fixture)."""
    size = getattr(request.function, "fs_size", FS_SIZE)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    path = Path(tempfile.mkdtemp(prefix="mssql2pg-diskfull-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        umount = ["umount", str(path)]
        if subprocess.run(umount, capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
        path.rmdir()


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); returns it (deleting it frees the space)."""
    filler = directory / "filler"
    block = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        small = b"\0" * 4096
        try:
            while True:
                out.write(small)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def rows(url: str) -> list[tuple[int, str]]:
    conn = connect(url)
    try:
        return [(int(i), str(h)) for i, h in conn.run("SELECT id, md5(pad) FROM dbo.big ORDER BY id")]
    finally:
        conn.close()


def metric(port: int, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def log_events(pipeline: PipelineProcess) -> list[dict[str, object]]:
    events = []
    for line in pipeline.log_text().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def start_replicating(source_url: str, target_url: str, tmp_path: Path) -> tuple[Any, PipelineProcess, int]:
    """``dbo.big`` with 200 rows at the source, and ``mssql2pg run`` (fast retries, ``retry.alert_after`` 3 s)
    once it has copied them: the source connection, the process and its HTTP port."""
    src = connect(source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.big (id int PRIMARY KEY, pad varchar(800) NOT NULL)")
    enable_table(src, "dbo", "big")
    src.run(f"INSERT INTO dbo.big SELECT g, {PAD} FROM generate_series(1, 200) g")
    port = free_port()
    config = write_config(
        tmp_path / "pipeline.yaml",
        source_url,
        target_url,
        ["dbo.big"],
        retry={"initial": 0.2, "maximum": 2, "alert_after": "3s"},
        http={"port": port},
    )
    pipeline = PipelineProcess(config, tmp_path / "pipeline.log")
    pipeline.start()
    try:
        wait_for(lambda: rows(target_url) == rows(source_url), timeout=60, what="the first 200 rows")
    except BaseException:
        pipeline.terminate()
        src.close()
        raise
    return src, pipeline, port


def test_target_disk_full_pauses_retries_and_resumes_once_space_is_freed(
    small_fs: Path, fresh_server: PgServer, emulated_source_url: str, tmp_path: Path
) -> None:
    tablespace = small_fs / "ts"
    tablespace.mkdir()
    os.chown(small_fs, *fresh_server.owner())
    os.chown(tablespace, *fresh_server.owner())
    dbname = fresh_server.create_database("dw")
    admin = fresh_server.connect()
    admin.run(f"CREATE TABLESPACE small LOCATION '{tablespace}'")
    admin.run(f'ALTER DATABASE "{dbname}" SET default_tablespace = small')  # what the pipeline creates goes there
    admin.close()
    target_url = fresh_server.url(dbname)

    src, pipeline, port = start_replicating(emulated_source_url, target_url, tmp_path)
    try:
        dst = fresh_server.connect(dbname)
        ((where,),) = dst.run(
            "SELECT coalesce(t.spcname, 'pg_default') FROM pg_class c LEFT JOIN pg_tablespace t "
            "ON t.oid = c.reltablespace WHERE c.oid = 'dbo.big'::regclass"
        )
        assert where == "small", "the replicated table is not on the small filesystem"

        filler = fill(small_fs)
        src.run(f"INSERT INTO dbo.big SELECT g, {PAD} FROM generate_series(1001, {1000 + BIG_ROWS}) g")

        wait_for(
            lambda: any(
                str(e.get("event", "")).startswith("target disk full: free space") for e in log_events(pipeline)
            ),
            timeout=60,
            what='the log line "target disk full: free space"',
        )
        line = next(e for e in log_events(pipeline) if str(e.get("event", "")).startswith("target disk full"))
        assert "No space left on device" in str(line["server_message"])
        reasons: list[str] = []

        def target_unhealthy() -> bool:
            body = readiness(port)[1].get("components", {}).get("target", {})
            reasons.append(f"{body.get('status')}: {body.get('reason')}")
            return body.get("status") == "unhealthy"

        wait_for(target_unhealthy, timeout=60, what="/readyz target unhealthy after retry.alert_after")
        assert any(r.startswith("degraded: target disk full, free space") for r in reasons) or reasons[-1].startswith(
            "unhealthy: target disk full, free space"
        ), reasons[-3:]
        assert pipeline.alive(), pipeline.log_text()[-4000:]
        assert metric(port, 'mssql2pg_retries_total{component="target"}') >= 2  # it keeps retrying, with backoff
        assert metric(port, 'mssql2pg_component_up{component="target"}') == 0  # Mssql2pgTargetUnreachable's input
        # nothing half-applied: the source transaction that did not fit left no row behind
        assert dst.run("SELECT count(*) FROM dbo.big WHERE id > 1000") == [[0]]
        assert dst.run("SELECT count(*) FROM dbo.big") == [[200]]

        began = time.monotonic()
        filler.unlink()
        wait_for(
            lambda: rows(target_url) == rows(emulated_source_url),
            timeout=120,
            what="the target to equal the source after space was freed",
        )
        recover_s = time.monotonic() - began
        wait_for(lambda: readiness(port)[1].get("status") == "healthy", timeout=60, what="/readyz healthy again")
        assert pipeline.alive()
        assert len(rows(target_url)) == 200 + BIG_ROWS
        report(
            "target disk full (tablespace on a full tmpfs)",
            recover_s,
            retries=int(metric(port, 'mssql2pg_retries_total{component="target"}')),
            health_during="target:degraded->unhealthy",
            health_after="healthy",
        )
        dst.close()
    finally:
        if pipeline.alive():
            pipeline.terminate()
        src.close()


def test_target_wal_full_stops_the_server_and_replication_resumes_after_restart(
    small_fs: Path, fresh_server: PgServer, emulated_source_url: str, tmp_path: Path
) -> None:
    """The target's WAL directory on the full filesystem: PostgreSQL cannot write WAL, PANICs and stops (it does
    not come back by itself). For the pipeline that is a target outage: it retries (target degraded, then
    unhealthy), loses nothing, and catches up once space is freed and the server is started again."""
    fresh_server.stop()
    wal = fresh_server.datadir / "pg_wal"
    moved = small_fs / "pg_wal"
    shutil.copytree(wal, moved, symlinks=True)
    shutil.rmtree(wal)
    wal.symlink_to(moved)
    for path in (small_fs, moved, *moved.rglob("*")):
        os.chown(path, *fresh_server.owner(), follow_symlinks=False)
    fresh_server.start()
    dbname = fresh_server.create_database("dw")
    target_url = fresh_server.url(dbname)

    src, pipeline, port = start_replicating(emulated_source_url, target_url, tmp_path)
    try:
        filler = fill(small_fs)
        # WAL the server must write somewhere: new segments cannot be created on the full filesystem
        writer = fresh_server.connect()
        with contextlib.suppress(Exception):  # the server PANICs under this statement
            writer.run("CREATE TABLE junk AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 100000) g")
        with contextlib.suppress(Exception):
            writer.close()
        src.run(f"INSERT INTO dbo.big SELECT g, {PAD} FROM generate_series(1001, {1000 + BIG_ROWS}) g")
        wait_for(
            lambda: readiness(port)[1].get("components", {}).get("target", {}).get("status") == "unhealthy",
            timeout=120,
            what="/readyz target unhealthy while the target server is down",
        )
        assert pipeline.alive(), pipeline.log_text()[-4000:]
        log = fresh_server.logfile.read_text(errors="replace")
        assert "No space left on device" in log, log[-3000:]
        assert "PANIC" in log, log[-3000:]
        stopped = wait_for(lambda: not fresh_server.is_running(), timeout=60, what="the target server to stop")
        assert stopped

        filler.unlink()
        began = time.monotonic()
        fresh_server.start()
        wait_for(
            lambda: rows(target_url) == rows(emulated_source_url),
            timeout=120,
            what="the target to equal the source after the server was started again",
        )
        recover_s = time.monotonic() - began
        wait_for(lambda: readiness(port)[1].get("status") == "healthy", timeout=60, what="/readyz healthy again")
        assert len(rows(target_url)) == 200 + BIG_ROWS
        report("target WAL full: server PANIC and stop", recover_s, health_during="target:unhealthy")
    finally:
        if pipeline.alive():
            pipeline.terminate()
        src.close()


# pg_wal holds one or two 16 MB segments; after the filler is deleted a new segment must fit
test_target_wal_full_stops_the_server_and_replication_resumes_after_restart.fs_size = "96m"  # type: ignore[attr-defined]
