"""Scale-out by table groups, for real (issue 16): one config file, processes started with
``MSSQL2PG__PIPELINE__GROUP=ga`` (twice: one is a standby) and ``=gb``, each with its own HTTP port, under a
steady workload. The active ``ga`` process is killed with -9 (its standby takes over: the time is measured and
printed, not asserted), then ``gb`` is killed with -9 and restarted while the workload goes on (a lagging group
catching up). At the end every row of every table is compared with the source.

Before each group had its own position, the groups overwrote one checkpoint row and this ended with thousands
of rows missing or stale.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from mssql2pg import control
from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import PipelineProcess, cli_env, run_cli, write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.pg import PgServer
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TABLES = {"ga": ("a1", "a2"), "gb": ("b1", "b2")}
GROUPS = [{"name": "dbo.a*", "group": "ga"}, {"name": "dbo.b*", "group": "gb"}]
STANDBY_POLL_ENV = "MSSQL2PG__PIPELINE__STANDBY_POLL"  # set it to measure the takeover with another poll


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Writer(threading.Thread):
    """A steady workload: transactions of inserts, updates and deletes, each within the tables of one group
    (tables that share source transactions must share a group), some rolled back."""

    def __init__(self, url: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.conn = connect(url)
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None
        self._next_id = 1

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._transaction()
                self.stop.wait(0.002)  # pacing of the workload, not a wait for a condition
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _transaction(self) -> None:
        rng = self.rng
        tables = TABLES[rng.choice(["ga", "gb"])]
        self.conn.run("BEGIN")
        for _ in range(rng.randint(1, 4)):
            table = rng.choice(tables)
            action = rng.random()
            if action < 0.6:
                self.conn.run(f"INSERT INTO dbo.{table} VALUES (:i, :v)", i=self._next_id, v=f"v{self._next_id}")
                self._next_id += 1
            elif action < 0.85:
                self.conn.run(
                    f"UPDATE dbo.{table} SET v = :v WHERE id = (SELECT id FROM dbo.{table} ORDER BY random() LIMIT 1)",
                    v=f"u{rng.randrange(1 << 20)}",
                )
            else:
                self.conn.run(f"DELETE FROM dbo.{table} WHERE id = (SELECT min(id) FROM dbo.{table})")
        if rng.random() < 0.1:
            self.conn.run("ROLLBACK")
        else:
            self.conn.run("COMMIT")
            self.committed += 1


def _rows(conn: pg8000.native.Connection, table: str) -> list[list[object]]:
    return conn.run(f"SELECT id, v FROM dbo.{table} ORDER BY id")


def _differences(src: pg8000.native.Connection, dst: pg8000.native.Connection) -> dict[str, str]:
    found: dict[str, str] = {}
    for table in (*TABLES["ga"], *TABLES["gb"]):
        try:
            expected, actual = _rows(src, table), _rows(dst, table)
        except pg8000.native.DatabaseError as exc:  # not created yet
            found[table] = str(exc)
            continue
        if expected != actual:
            exp, act = {r[0]: r for r in expected}, {r[0]: r for r in actual}
            missing = sorted(set(exp) - set(act))
            extra = sorted(set(act) - set(exp))
            stale = sorted(i for i in set(exp) & set(act) if exp[i] != act[i])
            found[table] = (
                f"missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)}), stale {stale[:5]}"
            )
    return found


def _readyz(proc: PipelineProcess) -> dict[str, Any]:
    """The process's /readyz body (200 or 503 alike)."""
    url = f"http://127.0.0.1:{proc.env['MSSQL2PG__HTTP__PORT']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as unready:
        body = json.loads(unready.read())
    return body


def _group_checkpoints(dst: pg8000.native.Connection) -> dict[str, bytes]:
    if not dst.run("SELECT to_regclass('mssql2pg.checkpoints') IS NOT NULL")[0][0]:
        return {}
    return {str(g): bytes(lsn) for g, lsn in dst.run("SELECT group_name, lsn FROM mssql2pg.checkpoints")}


def _advanced(dst: pg8000.native.Connection, group: str, since: bytes | None) -> bool:
    now = _group_checkpoints(dst).get(group)
    return now is not None and (since is None or now > since)


def _grouped_source(
    src: pg8000.native.Connection, tmp_path: Path, source_url: str, target_url: str, **extra: object
) -> Path:
    """The four tables of TABLES, CDC-enabled, and a configuration putting them in groups ga and gb."""
    src.run("CREATE SCHEMA dbo")
    for table in (*TABLES["ga"], *TABLES["gb"]):
        src.run(f"CREATE TABLE dbo.{table} (id int PRIMARY KEY, v text)")
        enable_table(src, "dbo", table)
    return write_config(tmp_path / "pipeline.yaml", source_url, target_url, GROUPS, **extra)  # type: ignore[arg-type]


def test_groups_with_standby_kill9_and_restart_end_exactly_equal(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src, dst = connect(emulated_source_url), connect(target_url)
    config = _grouped_source(src, tmp_path, emulated_source_url, target_url, pipeline={"standby_poll": "200ms"})

    def process(name: str, group: str) -> PipelineProcess:
        env = {"MSSQL2PG__PIPELINE__GROUP": group, "MSSQL2PG__HTTP__PORT": str(_free_port())}
        return PipelineProcess(config, tmp_path / f"{name}.log", env=env)

    ga1, ga2, gb = process("ga1", "ga"), process("ga2", "ga"), process("gb", "gb")
    seed = random.randrange(1 << 30)
    print(f"groups workload seed: {seed}")
    writer = Writer(emulated_source_url, seed)
    writer.start()
    processes = [ga1, ga2, gb]
    try:
        ga1.start()
        gb.start()
        wait_for(lambda: {"ga", "gb"} <= set(_group_checkpoints(dst)), timeout=90, what="both groups committed")
        ga2.start()
        wait_for(lambda: "standby: another process writes" in ga2.log_text(), timeout=60, what="ga2 is a standby")
        assert "standby" not in ga1.log_text()
        ready = wait_for(lambda: _readyz(ga2), timeout=30, what="ga2's /readyz")
        assert ready["components"]["target"]["reason"].startswith("standby: "), ready

        # kill -9 the active process of ga: its standby takes over
        before = _group_checkpoints(dst)["ga"]
        killed_at = time.monotonic()
        ga1.kill9()
        wait_for(lambda: "took over" in ga2.log_text(), timeout=60, what="ga2 to take over")
        took_over = time.monotonic() - killed_at
        wait_for(lambda: _advanced(dst, "ga", before), timeout=60, what="ga's checkpoint to move again")
        committing = time.monotonic() - killed_at
        print(
            f"standby takeover after kill -9: {took_over:.2f} s to take over the tables, "
            f"{committing:.2f} s to the first commit (standby_poll {os.environ.get(STANDBY_POLL_ENV, '200ms')})"
        )
        ga1.start()  # the restarted process is the standby now
        wait_for(lambda: "standby: another process writes" in ga1.log_text(), timeout=60, what="ga1 is the standby")

        # kill -9 gb; the workload goes on while it is down; then it restarts from its own position
        gb.kill9()
        down_at = writer.committed
        wait_for(lambda: writer.committed >= down_at + 200, timeout=120, what="the workload to go on while gb is down")
        before = _group_checkpoints(dst)["gb"]
        gb.start()
        wait_for(lambda: _advanced(dst, "gb", before), timeout=90, what="gb's checkpoint to move again")

        writer.stop.set()
        writer.join(30)
        assert writer.error is None, writer.error
        assert writer.committed > 300
        wait_for(lambda: not _differences(src, dst), timeout=120, what="the target to match the source")

        status = run_cli("status", "--config", str(config), "--json", env=cli_env(MSSQL2PG__PIPELINE__GROUP="gb"))
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["group"] == "gb"
        assert set(report["groups"]) == {"ga", "gb"}
        assert report["checkpoint"]["lsn"] == report["groups"]["gb"]["lsn"]
        assert {t["source"]: t["group"] for t in report["tables"]} == {
            "dbo.a1": "ga",
            "dbo.a2": "ga",
            "dbo.b1": "gb",
            "dbo.b2": "gb",
        }
        text = run_cli("status", "--config", str(config), env=cli_env(MSSQL2PG__PIPELINE__GROUP="ga"))
        assert text.returncode == 0, text.stdout + text.stderr
        assert "pipeline default group ga:" in text.stdout
        assert "  group ga " in text.stdout
        assert "  group gb " in text.stdout
        assert "[group gb]" in text.stdout
        for proc in (ga1, ga2, gb):
            assert proc.alive(), proc.log_text()[-3000:]
            assert proc.terminate() == 0, proc.log_text()[-3000:]
        assert _differences(src, dst) == {}
        waits = [
            line
            for line in (ga1.log_text() + ga2.log_text()).splitlines()
            if "transient fault" in line and "being written by another connection" in line
        ]
        assert waits == [], "a standby's wait is not a failed attempt"
    finally:
        writer.stop.set()
        for proc in processes:
            if proc.alive():
                proc.kill9()
        src.close()
        dst.close()


def test_a_partitioned_owner_cannot_commit_and_its_standby_takes_over(
    emulated_source_url: str,
    target_server: PgServer,
    target_dbname: str,
    tcp_proxy: Callable[[PgServer], TcpProxy],
    tmp_path: Path,
) -> None:
    """Fencing with real processes: the active ga process reaches the target through a proxy. The proxy first
    stalls (a partition nobody has noticed yet): its commits cannot arrive, and the standby does not take over
    while the server still holds the owner's session. Then the connections are reset (the server notices): the
    owner's session, its lock and whatever it had not committed are gone, the standby takes over, and the
    former owner, reconnecting, becomes the standby. Nothing is lost or applied twice."""
    target_url = target_server.url(target_dbname)
    src, dst = connect(emulated_source_url), connect(target_url)
    config = _grouped_source(
        src,
        tmp_path,
        emulated_source_url,
        target_url,
        pipeline={"standby_poll": "200ms"},
        retry={"initial": "100ms", "maximum": "500ms"},
    )
    proxy = tcp_proxy(target_server)
    behind_proxy = target_server.url(target_dbname, port=proxy.listen_port)

    def process(name: str, group: str, **env: str) -> PipelineProcess:
        env = {"MSSQL2PG__PIPELINE__GROUP": group, "MSSQL2PG__HTTP__PORT": str(_free_port()), **env}
        return PipelineProcess(config, tmp_path / f"{name}.log", env=env)

    owner = process("owner", "ga", MSSQL2PG__TARGET__URL=behind_proxy)
    standby, gb = process("standby", "ga"), process("gb", "gb")
    writer = Writer(emulated_source_url, random.randrange(1 << 30))
    processes = [owner, standby, gb]
    try:
        writer.start()
        owner.start()
        gb.start()
        wait_for(lambda: {"ga", "gb"} <= set(_group_checkpoints(dst)), timeout=90, what="both groups committed")
        standby.start()
        wait_for(lambda: "standby: another process writes" in standby.log_text(), timeout=60, what="a standby")

        proxy.pause()
        stalled_at = writer.committed
        wait_for(lambda: writer.committed >= stalled_at + 100, timeout=60, what="the workload to go on")
        assert "took over" not in standby.log_text(), "the owner's session still holds the lock"

        proxy.cut()
        wait_for(lambda: "took over" in standby.log_text(), timeout=60, what="the standby to take over")
        proxy.restore()
        wait_for(lambda: "standby: another process writes" in owner.log_text(), timeout=60, what="owner is standby")

        writer.stop.set()
        writer.join(30)
        assert writer.error is None, writer.error
        wait_for(lambda: not _differences(src, dst), timeout=120, what="the target to match the source")
        for proc in processes:
            assert proc.alive(), proc.log_text()[-3000:]
            assert proc.terminate() == 0, proc.log_text()[-3000:]
        assert _differences(src, dst) == {}
        logs = "".join(proc.log_text() for proc in processes)
        assert "would move backwards" not in logs  # two writers of one group would trip the checkpoint guard
    finally:
        writer.stop.set()
        for proc in processes:
            if proc.alive():
                proc.kill9()
        src.close()
        dst.close()


def _writers(dst: pg8000.native.Connection) -> dict[str, int]:
    """Group -> pid of the process writing it, as the target's lock holders show it."""
    return {
        group: int(writer.application_name.rsplit(":", 1)[1])
        for group, writer in control.read_status(dst, "default").writers.items()
    }


def test_processes_with_group_auto_share_the_groups_and_take_over_from_dead_ones(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """Issue 16 point 3, under a steady workload, with one configuration (``pipeline.group: auto``) for all:
    a process alone writes both groups; a second one joins and they have one each (the first lets one go); a
    third is a standby; kill -9 of a writer: the standby takes its group; kill -9 of another: the last one writes
    both. Nothing is lost or applied twice."""
    src, dst = connect(emulated_source_url), connect(target_url)
    config = _grouped_source(
        src, tmp_path, emulated_source_url, target_url, pipeline={"group": "auto", "standby_poll": "200ms"}
    )
    processes = [
        PipelineProcess(config, tmp_path / f"p{i}.log", env={"MSSQL2PG__HTTP__PORT": str(_free_port())})
        for i in range(3)
    ]
    first, second, third = processes
    writer = Writer(emulated_source_url, random.randrange(1 << 30))
    writer.start()

    def pid(proc: PipelineProcess) -> int:
        assert proc.proc is not None
        return proc.proc.pid

    def written_by(*procs: PipelineProcess) -> Callable[[], bool]:
        """Every group has a writer, each of ``procs`` writes one at least, and nobody else writes."""
        return lambda: set(_writers(dst)) == {"ga", "gb"} and set(_writers(dst).values()) == {pid(p) for p in procs}

    try:
        first.start()
        wait_for(lambda: {"ga", "gb"} <= set(_group_checkpoints(dst)), timeout=90, what="both groups committed")
        wait_for(written_by(first), timeout=60, what="the first process to write both groups")
        second.start()
        wait_for(written_by(first, second), timeout=60, what="one group each once the second joined")
        wait_for(lambda: "letting a group go" in first.log_text(), timeout=30, what="the first to say it let go")
        third.start()
        wait_for(lambda: "standby: every group has a writer" in third.log_text(), timeout=60, what="a standby")
        assert pid(third) not in _writers(dst).values()
        ready = wait_for(lambda: _readyz(third), timeout=30, what="the standby's /readyz")
        assert ready["status"] == "healthy", ready
        assert ready["components"]["target"]["reason"].startswith("standby: every group has a writer"), ready

        before = _group_checkpoints(dst)
        first.kill9()
        wait_for(written_by(second, third), timeout=60, what="the standby to take the dead process's group")
        wait_for(lambda: "took over" in third.log_text(), timeout=30, what="the standby to say it took over")
        wait_for(lambda: all(_advanced(dst, g, before[g]) for g in ("ga", "gb")), timeout=60, what="both to move")

        second.kill9()
        wait_for(written_by(third), timeout=60, what="the last process to write both groups")

        # status names the process writing each group (host:pid), and since when
        status = run_cli("status", "--config", str(config), "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        groups = json.loads(status.stdout)["groups"]
        assert {g: groups[g]["writer"]["process"].rsplit(":", 1)[1] for g in ("ga", "gb")} == {
            "ga": str(pid(third)),
            "gb": str(pid(third)),
        }
        assert all(groups[g]["writer"]["since"] for g in ("ga", "gb"))

        writer.stop.set()
        writer.join(30)
        assert writer.error is None, writer.error
        assert writer.committed > 100
        wait_for(lambda: not _differences(src, dst), timeout=120, what="the target to match the source")
        assert third.alive(), third.log_text()[-3000:]
        assert third.terminate() == 0, third.log_text()[-3000:]
        assert _differences(src, dst) == {}
        logs = "".join(proc.log_text() for proc in processes)
        assert "would move backwards" not in logs
        assert "Traceback" not in logs
    finally:
        writer.stop.set()
        for proc in processes:
            if proc.alive():
                proc.kill9()
        src.close()
        dst.close()
