"""The read model of ``mssql2pg status``: one pipeline's checkpoint, table states and dead letters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg import control
from mssql2pg.control import DeadLetterRecord
from mssql2pg.pipeline.status import collect
from mssql2pg.positions import Lsn
from tests.e2e.pipeline_process import write_config
from tests.fixtures.target import Connect, lsn
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _letter(table: str, n: int) -> DeadLetterRecord:
    return DeadLetterRecord(
        source_table=table,
        capture_instance=table.replace(".", "_"),
        commit_lsn=lsn(n),
        seqval=lsn(n),
        operation=2,
        source_tran_id=None,
        change={"values": {"id": n}},
        error_class="DatabaseError [23505]",
        message="duplicate key",
        stack="",
    )


def _two_pipelines_with_dead_letters(conn: pg8000.native.Connection) -> None:
    """Pipeline ``a``: two pending dead letters and an ignored one; pipeline ``b``: one pending."""
    conn.run("BEGIN")
    control.ensure_control_schema(conn)
    ids = control.record_dead_letters(conn, "a", [_letter("dbo.x", 5), _letter("dbo.x", 6), _letter("dbo.y", 7)])
    control.record_dead_letters(conn, "b", [_letter("dbo.x", 8)])
    assert control.ignore_dead_letter(conn, ids[2])
    conn.run("COMMIT")


def test_dead_letters_are_counted_per_pipeline_as_the_metric_counts_them(target_connect: Connect) -> None:
    conn = target_connect()
    _two_pipelines_with_dead_letters(conn)

    assert control.read_status(conn, "a").dead_letters == {"ignored": 1, "pending": 2}
    assert control.read_status(conn, "b").dead_letters == {"pending": 1}
    for pipeline in ("a", "b"):  # the mssql2pg_dead_letters gauge
        assert control.read_status(conn, pipeline).dead_letters == control.count_dead_letters_by_status(conn, pipeline)
    conn.close()


def test_status_command_counts_only_its_pipelines_dead_letters(
    target_connect: Connect, emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    conn = target_connect()
    _two_pipelines_with_dead_letters(conn)
    conn.close()
    for pipeline, expected in (("a", {"ignored": 1, "pending": 2}), ("b", {"pending": 1})):
        config = write_config(
            tmp_path / f"{pipeline}.yaml", emulated_source_url, target_url, ["dbo.x"], pipeline={"name": pipeline}
        )
        assert collect(config)["dead_letters"] == expected


def test_status_before_the_first_start_is_empty(target_connect: Connect) -> None:
    conn = target_connect()
    status = control.read_status(conn, "p")
    assert (status.created, status.checkpoint.lsn, status.tables, status.dead_letters) == (False, Lsn.NULL, (), {})
    conn.close()


def test_status_reads_checkpoint_and_table_states(target_connect: Connect) -> None:
    conn = target_connect()
    conn.run("BEGIN")
    control.ensure_control_schema(conn)
    control.advance_checkpoint(conn, "p", lsn(40), datetime(2024, 5, 1, 12, 0))
    control.register_table(conn, "p", source_table="dbo.a", capture_instance="dbo_a", target_table="dbo.a")
    control.mark_resynced(
        conn, "p", source_table="dbo.b", capture_instance="dbo_b", target_table="dbo.b", lsn=lsn(45), reason="r"
    )
    control.set_table_state(conn, "q", "dbo.a", "paused", reason="other pipeline", remediation="-")
    conn.run("COMMIT")

    status = control.read_status(conn, "p")

    assert status.created
    assert (status.checkpoint.lsn, status.checkpoint.commit_time) == (lsn(40), datetime(2024, 5, 1, 12, 0))
    assert status.checkpoint.updated_at is not None
    assert status.tables == (
        control.TableStatus("dbo.a", "dbo.a", "active", None, None, None),
        control.TableStatus("dbo.b", "dbo.b", "active", "r", None, lsn(45)),
    )
    assert status.dead_letters == {}
    conn.close()


def test_status_shows_the_groups_their_checkpoints_and_each_tables_group(target_connect: Connect) -> None:
    conn = target_connect()
    conn.run("BEGIN")
    control.ensure_control_schema(conn)
    control.advance_checkpoint(conn, "p", lsn(40))
    control.advance_checkpoint(conn, "p", lsn(50), group="ga")
    control.register_table(conn, "p", source_table="dbo.a", capture_instance="dbo_a", target_table="dbo.a", group="ga")
    control.register_table(conn, "p", source_table="dbo.b", capture_instance="dbo_b", target_table="dbo.b", group="gb")
    conn.run("COMMIT")

    ga, gb = control.read_status(conn, "p", "ga"), control.read_status(conn, "p", "gb")

    assert (ga.group, ga.checkpoint.lsn) == ("ga", lsn(50))
    assert (gb.group, gb.checkpoint.lsn) == ("gb", lsn(40))  # gb never committed: the position without a group
    assert {g: row.lsn for g, row in ga.groups.items()} == {"": lsn(40), "ga": lsn(50)}
    assert [(t.source_table, t.group) for t in ga.tables] == [("dbo.a", "ga"), ("dbo.b", "gb")]
    conn.close()


def test_status_names_the_session_that_writes_each_group(target_connect: Connect) -> None:
    """Issue 16 point 4: which process writes which group, and since when - read from the server's own record
    of who holds each table's write lock (a process that died holds none), with the process named by the
    ``application_name`` mssql2pg connects with."""
    conn = target_connect()
    conn.run("BEGIN")
    control.ensure_control_schema(conn)
    for table, group in (("dbo.a1", "ga"), ("dbo.a2", "ga"), ("dbo.b1", "gb")):
        control.register_table(conn, "p", source_table=table, capture_instance="ci", target_table=table, group=group)
    conn.run("COMMIT")
    writer = target_connect()
    writer.run("SET application_name = 'mssql2pg host-a:4242'")
    control.claim_tables(writer, "p", ["dbo.a1", "dbo.a2"])
    other_pipeline = target_connect()
    control.claim_tables(other_pipeline, "q", ["dbo.b1"])  # the same table name in another pipeline

    writers = control.read_status(conn, "p").writers

    assert set(writers) == {"ga"}
    assert writers["ga"].application_name == "mssql2pg host-a:4242"
    assert writers["ga"].since is not None
    writer.close()
    wait_for(lambda: control.read_status(conn, "p").writers == {}, timeout=10, what="the lock to go with its session")


def test_nobody_writes_a_group_before_the_first_start(target_connect: Connect) -> None:
    """A spreading process asks before any process created the control schema."""
    assert control.group_writers(target_connect(), "p") == {}
