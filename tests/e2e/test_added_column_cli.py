"""A column added at the source while two ``mssql2pg run`` processes share one configuration (one writes, one
stands by), driven the way an operator would meet it: ``ALTER TABLE ... ADD COLUMN`` with a per-row default and
nothing else. The writing process creates the new capture instance (``manage_capture_instances``), switches,
and is killed with -9 as soon as the added column is recorded; the standby takes over and finishes: the old
instance retired, the column filled in every row (``column-filled``, once). ``mssql2pg schema list --json`` and
``mssql2pg reconcile`` (exit 0) then say the table is whole, and it is equal to the source row by row."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import PipelineProcess, run_cli, write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import in_transaction, retrying

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 12_000  # more than two of the fill's pages (5,000 rows)


def _schema_list(config: Path) -> list[dict[str, object]]:
    listed = run_cli("schema", "list", "--json", "--config", str(config))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return list(json.loads(listed.stdout))


def _kinds(config: Path) -> list[tuple[object, object]]:
    return [(c["change"], c["column_name"]) for c in _schema_list(config)]


class _Updates:
    """Random updates of dbo.a (the new column too, once it exists) in small transactions, until stopped."""

    def __init__(self, url: str) -> None:
        self._conn = connect(url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="updates", daemon=True)
        self.with_n = threading.Event()
        self.errors: list[BaseException] = []
        self.written = 0

    def _run(self) -> None:
        rng = random.Random(11)
        try:
            while not self._stop.is_set():
                assignment = "v = :v" + (", n = :n" if self.with_n.is_set() else "")
                in_transaction(
                    self._conn,
                    *(
                        (f"UPDATE dbo.a SET {assignment} WHERE id = :i", {"v": f"u{self.written}", "n": -1, "i": i})
                        for i in (rng.randint(1, ROWS) for _ in range(3))
                    ),
                )
                self.written += 1
        except BaseException as exc:  # the test's assertion names it
            self.errors.append(exc)

    def __enter__(self) -> _Updates:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._conn.close()


def _instances(src: pg8000.native.Connection) -> list[str]:
    return [str(r[0]) for r in src.run("SELECT capture_instance FROM cdc.change_tables ORDER BY capture_instance")]


def test_a_column_added_at_the_source_arrives_in_every_row_across_a_kill9_and_a_standby_takeover(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    src.run("INSERT INTO dbo.a SELECT i, 'a' || i FROM generate_series(2, :n) AS i", n=ROWS)
    config = write_config(
        tmp_path / "p.yaml",
        emulated_source_url,
        target_url,
        ["dbo.a", "dbo.b"],
        snapshot={"mode": "never"},
        pipeline={"standby_poll": "200ms"},
        schema_evolution={"manage_capture_instances": True, "manage_interval": "200ms"},
    )
    first = PipelineProcess(config, tmp_path / "first.log")
    second = PipelineProcess(config, tmp_path / "second.log")
    dst = connect(target_url)
    query = "SELECT id, v, n FROM dbo.a ORDER BY id"
    try:
        first.start()
        wait_for(lambda: dst.run("SELECT to_regclass('dbo.a') IS NOT NULL")[0][0], timeout=60, what="dbo.a created")
        wait_for(lambda: dst.run("SELECT count(*) FROM dbo.a") == [[ROWS]], timeout=120, what="dbo.a replicated")
        second.start()
        wait_for(lambda: "standby" in second.log_text(), timeout=60, what="the second process standing by")
        with _Updates(emulated_source_url) as updates:
            wait_for(lambda: updates.written >= 10, what="updates flowing before the DDL")
            retrying(lambda: src.run("ALTER TABLE dbo.a ADD COLUMN n int DEFAULT (random() * 1000000)::int"))
            updates.with_n.set()
            wait_for(
                lambda: not first.alive() or ("add-column", "n") in _kinds(config),
                timeout=60,
                what="the writing process creating the instance and adding the column",
            )
            assert first.alive(), first.log_text()[-3000:]
            first.kill9()  # between the switch and the fill (or during it)
            wait_for(
                lambda: ("column-filled", "n") in _kinds(config),
                timeout=120,
                what="the standby taking over and filling the column",
            )
            wait_for(lambda: _instances(src) == ["dbo_a_v2", "dbo_b"], timeout=60, what="the old instance retired")
            flowing = updates.written
            wait_for(lambda: updates.written >= flowing + 10, what="updates flowing after the fill")
        assert not updates.errors, updates.errors
        wait_for(lambda: dst.run(query) == src.run(query), timeout=60, what="dbo.a equal to the source")
        assert second.terminate() == 0, second.log_text()[-3000:]

        filled_by = [p.log_path.name for p in (first, second) if "added columns filled" in p.log_text()]
        print(f"added column filled by {filled_by}")
        kinds = _kinds(config)
        assert kinds.count(("column-filled", "n")) == 1, kinds
        assert ("instance-created", None) in kinds
        assert ("instance-retired", None) in kinds
        reconciled = run_cli("reconcile", "--config", str(config), "--format", "json", "dbo.a", "dbo.b")
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert dst.run(query) == src.run(query)
        assert dst.run("SELECT count(*) FROM dbo.a WHERE n IS NULL") == [[0]]
        assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
        assert dst.run("SELECT count(*) FROM mssql2pg.target_conflicts") == [[0]]
    finally:
        for process in (first, second):
            if process.alive():
                process.kill9()
        src.close()
        dst.close()
