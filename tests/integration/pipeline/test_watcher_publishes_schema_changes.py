"""``mssql2pg_schema_changes{table, status}`` of a running pipeline follows the record, whoever changed it
(issue 12): the control watcher publishes the counts at every poll, so an approval by ``mssql2pg schema
approve`` (another process) that does not re-plan anything - here a dropped column, which never pauses its
table - still moves the change from pending-review to approved in this process's metric."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.observability import Observability
from mssql2pg.pipeline.watcher import ControlWatcher
from tests.e2e.pipeline_process import write_config
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

DROPPED = control.SchemaChange("dbo.a", "drop-column", "pending-review", capture_instance="dbo_a", column_name="v")


def test_an_approval_made_elsewhere_shows_in_the_running_pipeline_s_metric(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a"]))
    dst = connect(target_url)
    dst.run("BEGIN")
    control.ensure_control_schema(dst)
    change_id, _ = control.record_schema_change(dst, "default", DROPPED)
    dst.run("COMMIT")
    obs = Observability()

    def gauge(status: str) -> float | None:
        return obs.metrics.registry.get_sample_value("mssql2pg_schema_changes", {"table": "dbo.a", "status": status})

    watcher = ControlWatcher(config, frozenset({"dbo.a"}), frozenset(), threading.Event(), 0.1, obs=obs).start()
    try:
        wait_for(lambda: gauge("pending-review") == 1, what="the recorded change published")
        control.approve_schema_change(dst, "default", change_id)  # `mssql2pg schema approve`, another process
        wait_for(lambda: gauge("approved") == 1, what="the approval published by the next poll")
        assert gauge("pending-review") == 0
    finally:
        watcher.close()
        dst.close()
