"""The capture-instance switch (issue 12 points 1-2): a second capture instance on a replicated table, created
while ``mssql2pg run`` replicates with a writer changing both tables, is followed without a restart.

The pipeline notices the new instance within one polling cycle (the reader compares the instances at every
window with those the plan was built with), reads the old instance up to the new one's start LSN and the new one
from there (no gap, no overlap: no change is missed and no insert is applied twice, which would be a dead
letter), and keeps source transactions whole. When the operator then disables the old instance, the pipeline
follows again and reads only the new one; and again when a third shape replaces the second.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.check import run_checks
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import (
    Running,
    Writer,
    assert_exact,
    disable_instance,
    enable_instance,
    rows,
    switched,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("separate_process", [False, True], ids=["reader-thread", "reader-process"])
def test_a_second_capture_instance_is_switched_to_without_gap_or_overlap(
    emulated_source_url: str, target_url: str, tmp_path: Path, separate_process: bool
) -> None:
    """The reader in a process of its own (``reader.separate_process``) sends the re-plan across intact."""
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
            reader={"poll_interval": 0.05, "separate_process": separate_process},
        )
    )
    try:
        with Running(Pipeline.from_config(config)) as running:
            before = rows(src, "dbo.a")
            wait_for(lambda: rows(dst, "dbo.a") == before, what="dbo.a replicated before the schema change")

            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 20, what="changes flowing before the new capture instance")
                enabled = time.monotonic()
                enable_instance(src, "a", "dbo_a_v2")
                wait_for(
                    lambda: running.failures or running.instances("dbo.a") == ["dbo_a", "dbo_a_v2"],
                    what="the running pipeline applying both capture instances of dbo.a",
                )
                delay = time.monotonic() - enabled
                print(f"capture-instance switch: detected and re-planned {delay:.3f}s after sp_cdc_enable_table")
                assert not running.failures, f"the pipeline stopped: {running.failures}"
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 30, what="changes flowing after the new instance")
            assert not writer.errors
            for table in ("a", "b"):
                wait_for(
                    lambda t=table: rows(dst, f"dbo.{t}") == rows(src, f"dbo.{t}"),
                    timeout=60,
                    what=f"dbo.{table} equal",
                )  # type: ignore[misc]
                assert_exact(src, dst, table, "id, v")
            # the new instance really carries the changes now: its start LSN is below the last change's
            ((v2_start,),) = src.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'dbo_a_v2'")
            assert v2_start is not None
            assert src.run('SELECT count(*) FROM cdc."dbo_a_v2_CT"')[0][0] > 0

            # the operator retires the old instance once the checkpoint passed the new one's start; the pipeline
            # follows
            with Writer(emulated_source_url, first_id=10_000) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the old instance goes")
                wait_for(lambda: switched(src, dst, "dbo_a_v2"), what="the checkpoint past dbo_a_v2's start")
                findings = [f.what for f in run_checks(config, lambda: connect(target_url)).findings]
                assert [f for f in findings if "capture instance dbo_a can be disabled" in f], findings
                disable_instance(src, "a", "dbo_a")
                wait_for(
                    lambda: running.failures or running.instances("dbo.a") == ["dbo_a_v2"],
                    what="the running pipeline applying only dbo_a_v2",
                )
                assert not running.failures, f"the pipeline stopped: {running.failures}"
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 30, what="changes flowing after the old instance went")
            assert not writer.errors
            for table in ("a", "b"):
                wait_for(
                    lambda t=table: rows(dst, f"dbo.{t}") == rows(src, f"dbo.{t}"),
                    timeout=60,
                    what=f"dbo.{table} equal",
                )  # type: ignore[misc]
                assert_exact(src, dst, table, "id, v")
            assert running.alive(), f"the pipeline stopped: {running.failures}"

            # a third shape replaces the second (at most two instances: the oldest went first)
            with Writer(emulated_source_url, first_id=20_000) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the third instance")
                enable_instance(src, "a", "dbo_a_v3")
                wait_for(
                    lambda: running.failures or running.instances("dbo.a") == ["dbo_a_v2", "dbo_a_v3"],
                    what="the running pipeline applying dbo_a_v2 and dbo_a_v3",
                )
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the third instance")
                wait_for(lambda: switched(src, dst, "dbo_a_v3"), what="the checkpoint past dbo_a_v3's start")
                disable_instance(src, "a", "dbo_a_v2")
                wait_for(
                    lambda: running.failures or running.instances("dbo.a") == ["dbo_a_v3"],
                    what="the running pipeline applying only dbo_a_v3",
                )
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after v2 went")
            assert not writer.errors
            assert not running.failures, f"the pipeline stopped: {running.failures}"
            for table in ("a", "b"):
                wait_for(
                    lambda t=table: rows(dst, f"dbo.{t}") == rows(src, f"dbo.{t}"),
                    timeout=60,
                    what=f"dbo.{table} equal",
                )  # type: ignore[misc]
                assert_exact(src, dst, table, "id, v")
        assert not running.failures
        assert table_state(dst, "dbo.a")[0] == "active"
        assert table_state(dst, "dbo.b")[0] == "active"
        assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
        switches = control.list_schema_changes(dst, "default")
        assert [(c.source_table, c.change, c.status, c.capture_instance) for c in switches] == [
            ("dbo.a", "instance-switch", "auto-applied", "dbo_a_v2"),
            ("dbo.a", "instance-switch", "auto-applied", "dbo_a_v3"),
        ]
        assert (
            running.pipeline.obs.metrics.registry.get_sample_value(
                "mssql2pg_schema_changes", {"table": "dbo.a", "status": "auto-applied"}
            )
            == 2
        )
        assert switches[0].detail is not None
        assert switches[0].detail.startswith("reading dbo_a up to ")
    finally:
        src.close()
        dst.close()
