"""An added column whose source default is not a constant (issue 12): SQL Server's ``getdate()``, ``newid()``
... are carried to the target column as their PostgreSQL equivalents (a fixed allowlist), anything else is not
carried and the record says why. A writer changes both tables throughout; the pipeline manages the capture
instances itself (no operator step). The values themselves arrive from the source as any other (the change
rows carry them); the target's default serves rows written there directly. Rows that existed before the ALTER
were filled by the source's clock and generator at the ALTER: the pipeline sets them from the source table
(``column-filled``), and then every row is exact."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.reconcile.run import Settings, reconcile
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import Running, Writer, assert_exact, in_transaction, retrying

pytestmark = pytest.mark.integration

COLUMNS = "id, v, created, token, code"


def test_getdate_and_newid_defaults_are_carried_and_others_are_recorded_as_not_carried(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b"],
            snapshot={"mode": "never"},
            schema_evolution={"manage_capture_instances": True, "manage_interval": 0.1},
        )
    )
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: dst.run("SELECT count(*) FROM dbo.a") == [[1]], what="dbo.a replicated")
            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the DDL")
                retrying(
                    lambda: src.run(
                        "ALTER TABLE dbo.a ADD COLUMN created timestamp(6) DEFAULT now(), "
                        "ADD COLUMN token uuid DEFAULT gen_random_uuid(), ADD COLUMN code int DEFAULT (random() * 0)"
                    )
                )
                wait_for(
                    lambda: running.failures or running.instances("dbo.a") == ["dbo_a_v2"],
                    timeout=60,
                    what="the new instance created, switched to and the old one retired",
                )
                assert not running.failures, running.failures
                # rows inserted by the application now take the source's defaults; the changes carry the values
                for i in range(50_000, 50_020):
                    in_transaction(src, ("INSERT INTO dbo.a (id, v) VALUES (:i, 'x')", {"i": i}))
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the switch")
            assert not writer.errors
            query = f"SELECT {COLUMNS} FROM dbo.a WHERE id >= 50000 ORDER BY id"
            wait_for(lambda: dst.run(query) == src.run(query), timeout=60, what="the rows written after the switch")
            assert all(r[2] is not None and r[3] is not None for r in dst.run(query))
            assert running.alive(), running.failures
            wait_for(
                lambda: (
                    len([c for c in control.list_schema_changes(dst, "default") if c.change == "column-filled"]) == 3
                ),
                timeout=60,
                what="the added columns filled",
            )
            # the writer's last changes applied too, before the stop: reconcile must not find the target behind
            assert running.pipeline.wait_caught_up(60), "the pipeline did not catch up with the source"

        # the target columns have the PostgreSQL equivalents as defaults; code's default is not carried
        defaults = dict(
            dst.run(
                "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = 'dbo.a'::regclass AND a.attname IN ('created', 'token', 'code')"
            )
        )
        assert defaults == {"created": "LOCALTIMESTAMP", "token": "gen_random_uuid()", "code": None}
        # ... and work: a row written in the target directly gets a time and a fresh uuid
        required = [
            str(r[0])
            for r in dst.run(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'dbo.a'::regclass AND attnum > 0 AND attnotnull "
                "AND NOT atthasdef AND attname LIKE '\\_cdc\\_%'"
            )
        ]
        copied = ", ".join(f'"{c}"' for c in required)
        dst.run("BEGIN")
        dst.run(f"INSERT INTO dbo.a (id, v, {copied}) SELECT -1, 'direct', {copied} FROM dbo.a WHERE id = 1")
        ((created, token, code),) = dst.run("SELECT created, token, code FROM dbo.a WHERE id = -1")
        dst.run("ROLLBACK")
        assert created is not None
        assert isinstance(token, uuid.UUID)
        assert code is None
        added = {c.column_name: c for c in control.list_schema_changes(dst, "default") if c.change == "add-column"}
        assert set(added) == {"created", "token", "code"}
        assert "the source default (getdate()) carried as LOCALTIMESTAMP" in str(added["created"].detail)
        assert "the source default (newid()) carried as gen_random_uuid()" in str(added["token"].detail)
        assert "is not carried: no PostgreSQL equivalent" in str(added["code"].detail)

        # the rows from before the ALTER, filled by the source's clock and generator at the ALTER, were set from
        # the source table by the pipeline (column-filled): nothing left for reconcile
        filled = {c.column_name for c in control.list_schema_changes(dst, "default") if c.change == "column-filled"}
        assert filled == {"created", "token", "code"}
        (report,) = reconcile(config, ["dbo.a"], Settings(settle_seconds=0))
        assert report.status == "consistent", report
        assert_exact(src, dst, "a", COLUMNS)
        assert_exact(src, dst, "b", "id, v")
        assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
    finally:
        src.close()
        dst.close()
