"""Rows that cannot fit the migrated target once a paused table resumes (issue 12 point 6).

A type change the target cannot follow on its own pauses ``dbo.c`` and holds its position; its changes wait in
CDC while a writer keeps changing the other tables. The operator migrates the target column and, as their own
migration may be narrower than the source (here a CHECK the business wants on the target), some of the held
changes cannot be written. After ``mssql2pg schema approve`` the table resumes from its held position: those rows
become dead letters, everything else is applied, and the table keeps replicating - an exact comparison of
every other row afterwards, and the other tables untouched by it."""

from __future__ import annotations

from collections.abc import Set
from decimal import Decimal
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline import watcher
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.schema_ops import approve_change, list_changes
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import (
    Running,
    Writer,
    assert_exact,
    last_change_lsns,
    retrying,
    rows,
)

pytestmark = pytest.mark.integration

TOO_BIG = {13, 17, 23}  # inserted while paused with a d the migrated target refuses
UPDATED_TOO_BIG = 2  # an existing row updated to such a d while paused


def _c(conn: pg8000.native.Connection, skip: Set[int] = frozenset()) -> list[list[object]]:
    return [r for r in conn.run("SELECT id, d::text FROM dbo.c ORDER BY id") if int(r[0]) not in skip]


def test_after_approve_rows_the_migrated_target_refuses_are_dead_letters_and_the_rest_is_applied(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)  # the approval is taken up quickly
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, d numeric(5,2))")
    enable_table(src, "dbo", "c")
    for i in range(1, 6):
        src.run("INSERT INTO dbo.c VALUES (:i, :d)", i=i, d=Decimal(i) / 4)
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b", "dbo.c"],
            snapshot={"mode": "never"},
        )
    )
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: _c(dst) == _c(src), what="dbo.c replicated")
            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the DDL")
                # not a widening: dbo.c pauses with its position held; its changes wait in CDC
                retrying(lambda: src.run("ALTER TABLE dbo.c ALTER COLUMN d TYPE real"))
                wait_for(lambda: table_state(dst, "dbo.c")[0] == "paused", what="dbo.c paused by the type change")
                for i in range(10, 30):
                    src.run("INSERT INTO dbo.c VALUES (:i, :d)", i=i, d=5000.5 if i in TOO_BIG else i * 1.5)
                src.run("UPDATE dbo.c SET d = 9999 WHERE id = :i", i=UPDATED_TOO_BIG)
                src.run("UPDATE dbo.c SET d = 2.5 WHERE id = 1")
                src.run("DELETE FROM dbo.c WHERE id = 5")
                assert dst.run("SELECT count(*) FROM dbo.c WHERE id >= 10") == [[0]]

                # the operator's migration: the recommended type, plus a rule of their own the source lacks
                dst.run('ALTER TABLE "dbo"."c" ALTER COLUMN "d" TYPE real USING "d"::real')
                dst.run('ALTER TABLE "dbo"."c" ADD CONSTRAINT d_below_1000 CHECK ("d" < 1000)')
                pending = [c for c in list_changes(config, "pending-review") if c.change == "type-change"]
                assert len(pending) == 1
                gauge = running.pipeline.obs.metrics.registry.get_sample_value
                assert gauge("mssql2pg_schema_changes", {"table": "dbo.c", "status": "pending-review"}) == 1
                approved = approve_change(config, pending[0].id)  # what `mssql2pg schema approve` does
                assert approved.approved, approved.message
                # the running pipeline's metric follows an approval made elsewhere, within one control poll
                wait_for(
                    lambda: gauge("mssql2pg_schema_changes", {"table": "dbo.c", "status": "approved"}) == 1,
                    what="the running pipeline's mssql2pg_schema_changes showing the approval",
                )
                assert gauge("mssql2pg_schema_changes", {"table": "dbo.c", "status": "pending-review"}) == 0
                wait_for(lambda: table_state(dst, "dbo.c")[0] == "active", what="dbo.c active again")
                wait_for(lambda: running.instances("dbo.c") == ["dbo_c"], what="the running pipeline taking dbo.c back")
                # the table goes on after the refused rows: later changes arrive
                for i in range(30, 40):
                    src.run("INSERT INTO dbo.c VALUES (:i, :d)", i=i, d=i * 0.5)
                src.run("UPDATE dbo.c SET d = 7.25 WHERE id = 10")
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the resume")
            assert not writer.errors

            refused = TOO_BIG | {UPDATED_TOO_BIG}
            wait_for(lambda: _c(dst, refused) == _c(src, refused), timeout=60, what="every other row of dbo.c equal")
            for table in ("a", "b"):
                wait_for(
                    lambda t=table: rows(dst, f"dbo.{t}") == rows(src, f"dbo.{t}"), timeout=60, what=f"dbo.{table}"
                )  # type: ignore[misc]
                assert_exact(src, dst, table, "id, v")
            assert running.alive(), running.failures

        # exactly the refused changes are dead letters, each naming the check that refused it
        letters = dst.run(
            "SELECT source_table, operation, (change -> 'values' ->> 'id')::int, message FROM mssql2pg.dead_letters "
            "ORDER BY 3"
        )
        assert [(t, op, key) for t, op, key, _ in letters] == [
            ("dbo.c", 4, UPDATED_TOO_BIG),
            ("dbo.c", 2, 13),
            ("dbo.c", 2, 17),
            ("dbo.c", 2, 23),
        ]
        assert all("d_below_1000" in str(message) for *_, message in letters), letters
        # the refused inserts are absent; the refused update left the row as it was before it
        assert dst.run("SELECT count(*) FROM dbo.c WHERE id IN (13, 17, 23)") == [[0]]
        assert dst.run("SELECT d::text FROM dbo.c WHERE id = :i", i=UPDATED_TOO_BIG) == [["0.5"]]
        # the rest is exact, LSN of each key's last change included
        assert _c(dst, refused) == _c(src, refused)
        lsns = last_change_lsns(src, "c")
        applied = {int(k): bytes(lsn) for k, lsn in dst.run("SELECT id, _cdc_lsn FROM dbo.c") if int(k) not in refused}
        assert applied == {k: v for k, v in lsns.items() if k not in refused and k != 5}  # 5 was deleted
        assert table_state(dst, "dbo.c")[0] == "active"
        assert not running.failures
    finally:
        src.close()
        dst.close()
