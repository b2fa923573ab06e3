"""kill -9 of a real ``mssql2pg run`` during a capture-instance switch stays exactly-once (issue 12 point 2).

The process is killed right after it noticed the second capture instance (while it re-plans), then again while
it reads across the new instance's start LSN, and once more after the operator disabled the old instance; a
writer changes both tables the whole time. The last run (``--until-caught-up``) must leave the target equal to
the source row by row, each row at its key's last change, with no dead letter (an overlap would apply an insert
twice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import PipelineProcess, run_cli, write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import (
    Writer,
    assert_exact,
    disable_instance,
    enable_instance,
    switched,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _checkpoint(target_url: str) -> object:
    conn = connect(target_url)
    try:
        if not conn.run("SELECT to_regclass('mssql2pg.checkpoints') IS NOT NULL")[0][0]:
            return None
        rows = conn.run("SELECT lsn FROM mssql2pg.checkpoints ORDER BY lsn DESC LIMIT 1")
        return rows[0][0] if rows else None
    finally:
        conn.close()


def _moves(pipeline: PipelineProcess, target_url: str, what: str) -> None:
    """Wait until the running process commits a later checkpoint than now."""
    before = _checkpoint(target_url)
    wait_for(lambda: not pipeline.alive() or _checkpoint(target_url) != before, timeout=60, what=what)
    assert pipeline.alive(), pipeline.log_text()[-3000:]


def test_kill9_during_a_capture_instance_switch_loses_and_repeats_nothing(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    config = write_config(
        tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"], snapshot={"mode": "never"}
    )
    log_path = tmp_path / "pipeline.log"
    pipeline = PipelineProcess(config, log_path)
    try:
        with Writer(emulated_source_url, first_id=100) as writer:
            pipeline.start()
            _moves(pipeline, target_url, "the first process replicating")
            enable_instance(src, "a", "dbo_a_v2")
            wait_for(
                lambda: "capture instances of dbo.a changed" in pipeline.log_text(),
                timeout=60,
                what="the process noticing the second capture instance",
            )
            pipeline.kill9()  # while it re-plans

            pipeline.start()
            _moves(pipeline, target_url, "the restarted process reading across the switch")
            pipeline.kill9()

            pipeline.start()
            _moves(pipeline, target_url, "the restarted process replicating from both instances")
            dst = connect(target_url)
            try:
                wait_for(lambda: switched(src, dst, "dbo_a_v2"), timeout=60, what="the checkpoint past the switch")
            finally:
                dst.close()
            disable_instance(src, "a", "dbo_a")
            wait_for(
                lambda: pipeline.log_text().count("capture instances of dbo.a changed") >= 2,
                timeout=60,
                what="the process noticing the disabled instance",
            )
            pipeline.kill9()
            pipeline.start()
            _moves(pipeline, target_url, "the restarted process reading only the new instance")
            flowing = writer.written
            wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the last restart")
        assert not writer.errors
        assert pipeline.terminate() == 0
        result = run_cli("run", "--config", str(config), "--until-caught-up")
        assert result.returncode == 0, result.stdout + result.stderr

        dst = connect(target_url)
        try:
            for table in ("a", "b"):
                assert_exact(src, dst, table, "id, v")
            assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
            # the change is recorded once across the kills, and logged (as JSON) by the process that recorded it;
            # a kill between that commit and the log line would leave none, never two
            logged = [json.loads(line) for line in pipeline.log_text().splitlines() if '"schema change"' in line]
            assert [(e["table"], e["change"], e["status"], e["capture_instance"]) for e in logged] in (
                [("dbo.a", "instance-switch", "auto-applied", "dbo_a_v2")],
                [],
            )
            assert [c[0] for c in dst.run("SELECT change FROM mssql2pg.schema_changes")] == ["instance-switch"]
            assert dst.run("SELECT source_table, state FROM mssql2pg.table_state ORDER BY 1") == [
                ["dbo.a", "active"],
                ["dbo.b", "active"],
            ]
        finally:
            dst.close()
    finally:
        if pipeline.alive():
            pipeline.kill9()
        src.close()
