"""Positions per table group (control schema version 4) and the one-writer rule (issue 16, points 1 and 2).

* every group of a pipeline has its own checkpoint row; a group never reads another group's position;
* a target of version 2 upgrades in place, and its one checkpoint becomes the position of every group that has
  none of its own yet;
* the write lock of a table is a session lock on the very connection the applier writes through: a writer whose
  session is gone has lost its lock *and* its open transaction, so it cannot commit after a standby took over.
"""

from __future__ import annotations

from decimal import Decimal

import pg8000.native
import pytest

from mssql2pg import control
from mssql2pg.control import ensure_control_schema
from mssql2pg.control.checkpoints import BEFORE_ANY_CHANGE
from mssql2pg.errors import TerminalError
from mssql2pg.model import Operation, SourceColumn
from mssql2pg.sink import Applier, build_target_table
from tests.fixtures.target import Connect, TxBuilder, capture_instance, lsn, wait_until_tables_released
from tests.integration.control.test_migrations import RELEASED_RESUME_AFTER, RELEASED_VERSION_1

pytestmark = pytest.mark.integration

T = capture_instance(
    "dbo.Ledger", [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Amount", 2, "money")], ["Id"]
)


def _ensure(conn: pg8000.native.Connection) -> None:
    conn.run("BEGIN")
    ensure_control_schema(conn)
    conn.run("COMMIT")


def _version_2_target(conn: pg8000.native.Connection) -> None:
    """A target as version 2 left it: one checkpoint per pipeline, a resynced table with its own position."""
    conn.run("BEGIN")
    for statement in [*RELEASED_VERSION_1, RELEASED_RESUME_AFTER]:
        conn.run(statement)
    conn.run("UPDATE mssql2pg.schema_version SET version = 2")
    conn.run(
        "INSERT INTO mssql2pg.checkpoints (pipeline, lsn, lsn_text) VALUES ('p', :lsn, :text)",
        lsn=lsn(42).raw,
        text=str(lsn(42)),
    )
    conn.run(
        "INSERT INTO mssql2pg.table_state (pipeline, source_table, capture_instance, target_table) VALUES "
        "('p', 'dbo.a', 'dbo_a', 'dbo.a'), ('p', 'dbo.b', 'dbo_b', 'dbo.b')"
    )
    conn.run(
        "INSERT INTO mssql2pg.table_state (pipeline, source_table, capture_instance, target_table, resume_after) "
        "VALUES ('p', 'dbo.r', 'dbo_r', 'dbo.r', :lsn)",
        lsn=lsn(30).raw,
    )
    conn.run("COMMIT")


def test_version_2_target_upgrades_and_every_group_inherits_its_position(target_connect: Connect) -> None:
    conn = target_connect()
    _version_2_target(conn)
    assert control.read_checkpoint(conn, "p", "ga") == lsn(42)  # readers do not migrate: the one row

    _ensure(conn)

    assert control.installed_version(conn) == control.CONTROL_VERSION
    assert {g: row.lsn for g, row in control.group_checkpoints(conn, "p").items()} == {"": lsn(42)}
    for group in ("", "ga", "gb"):
        assert control.read_checkpoint(conn, "p", group) == lsn(42), group
    assert control.table_groups(conn, "p") == {"dbo.a": "", "dbo.b": "", "dbo.r": ""}
    assert control.resume_positions(conn, "p") == {"dbo.r": lsn(30)}

    # a group that commits has its own position from then on; the others keep theirs
    conn.run("BEGIN")
    control.advance_checkpoint(conn, "p", lsn(50), group="ga")
    control.advance_checkpoint(conn, "p", lsn(45), group="gb")  # behind ga: not "backwards", another row
    conn.run("COMMIT")
    assert control.read_checkpoint(conn, "p", "ga") == lsn(50)
    assert control.read_checkpoint(conn, "p", "gb") == lsn(45)
    assert control.read_checkpoint(conn, "p") == lsn(42)
    assert control.read_checkpoint(conn, "other", "ga").is_null


def test_a_group_never_starts_from_another_groups_position(target_connect: Connect) -> None:
    conn = target_connect()
    _ensure(conn)
    conn.run("BEGIN")
    control.advance_checkpoint(conn, "p", lsn(50), group="ga")
    conn.run("COMMIT")
    assert control.read_checkpoint(conn, "p", "gb").is_null
    assert control.read_checkpoint(conn, "p").is_null
    # a table of a group that never committed (and nothing to inherit) moves into ga from before any change
    conn.run("BEGIN")
    control.register_table(conn, "p", source_table="dbo.x", capture_instance="dbo_x", target_table="dbo.x", group="gx")
    assert control.move_tables_to_group(conn, "p", "ga", ["dbo.x"], lsn(50)) == {"dbo.x": BEFORE_ANY_CHANGE}
    conn.run("COMMIT")
    conn.run("BEGIN")
    with pytest.raises(TerminalError, match="backwards"):
        control.advance_checkpoint(conn, "p", lsn(49), group="ga")  # its own row still only moves forward
    conn.run("ROLLBACK")


def test_a_table_moving_between_groups_keeps_its_own_position(target_connect: Connect) -> None:
    conn = target_connect()
    _version_2_target(conn)
    _ensure(conn)
    conn.run("BEGIN")
    control.advance_checkpoint(conn, "p", lsn(60), group="ga")
    control.register_table(conn, "p", source_table="dbo.n", capture_instance="dbo_n", target_table="dbo.n", group="gx")
    conn.run("COMMIT")

    conn.run("BEGIN")
    # dbo.a: at the position without a group (42), the same as gb's inherited checkpoint: only the group changes;
    # so is dbo.n, whose group never committed and so was at the inherited 42 too.
    # dbo.r: its own resume position (30) goes with it
    moved = control.move_tables_to_group(conn, "p", "gb", ["dbo.a", "dbo.r", "dbo.n"], lsn(42))
    conn.run("COMMIT")
    assert moved == {"dbo.r": lsn(30)}
    assert control.resume_positions(conn, "p", "gb") == {"dbo.r": lsn(30)}

    conn.run("BEGIN")
    moved = control.move_tables_to_group(conn, "p", "ga", ["dbo.a", "dbo.b"], lsn(60))  # ga is ahead of both
    conn.run("COMMIT")
    assert moved == {"dbo.a": lsn(42), "dbo.b": lsn(42)}
    assert control.table_groups(conn, "p") == {"dbo.a": "ga", "dbo.b": "ga", "dbo.r": "gb", "dbo.n": "gb"}
    assert control.resume_positions(conn, "p", "ga") == {"dbo.a": lsn(42), "dbo.b": lsn(42)}
    assert control.resume_positions(conn, "p", "gb") == {"dbo.r": lsn(30)}


def _backend_pid(applier: Applier) -> int:
    live = applier._conn  # the test ends the applier's server session from outside
    assert live is not None
    return int(live.run("SELECT pg_backend_pid()")[0][0])


def test_a_writer_that_lost_its_session_lock_cannot_commit(target_connect: Connect) -> None:
    """The former writer A stages a transaction; its session ends (a partition the server noticed, an
    administrator, a restart): the lock is released with it. Standby B takes over and commits. A's commit fails,
    nothing of it is in the target, and the checkpoint is B's."""
    admin = target_connect()
    table = build_target_table(T)
    a = Applier(target_connect, [table], "p", checkpoints=control.PipelineCheckpoint("p", group="ga"))
    b = Applier(target_connect, [table], "p", checkpoints=control.PipelineCheckpoint("p", group="ga"))
    txs = TxBuilder()
    a.start()
    with pytest.raises(control.TableBusyError, match="standby"):
        b.start()  # A writes the group: B is a standby
    b.abandon()
    a.offer(txs.tx((T, Operation.INSERT, [1, Decimal(1)])))
    a.flush()
    lost = txs.tx((T, Operation.INSERT, [2, Decimal(2)]))
    a.offer(lost)  # staged in A's open transaction, not committed
    assert a.group.pending_lsn == lost.commit_lsn

    admin.run("SELECT pg_terminate_backend(:pid)", pid=_backend_pid(a))
    wait_until_tables_released(admin)
    assert b.start() == a.stats.checkpoint  # B takes over from what A committed
    b.offer(txs.tx((T, Operation.INSERT, [3, Decimal(3)])))
    b.flush()

    with pytest.raises((pg8000.native.InterfaceError, pg8000.native.DatabaseError, OSError)):
        a.flush()  # the session is gone, and the open transaction with it
    a.abandon()

    assert admin.run('SELECT "id" FROM dbo.ledger ORDER BY 1') == [[1], [3]]
    assert control.read_checkpoint(admin, "p", "ga") == b.stats.checkpoint
    # and A, restarting, is now the standby
    with pytest.raises(control.TableBusyError):
        a.start()
    a.abandon()
    b.close()


def test_a_tables_checkpoint_is_the_checkpoint_of_the_group_that_covers_it(target_connect: Connect) -> None:
    """What ``reconcile`` waits for: a table in group ga is current once ga's checkpoint passed the source's
    LSN, whatever the other groups (or the row without a group) say."""
    conn = target_connect()
    _ensure(conn)
    conn.run("BEGIN")
    control.register_table(conn, "p", source_table="dbo.a", capture_instance="dbo_a", target_table="dbo.a", group="ga")
    control.register_table(conn, "p", source_table="dbo.n", capture_instance="dbo_n", target_table="dbo.n")
    control.advance_checkpoint(conn, "p", lsn(70), group="ga")
    control.advance_checkpoint(conn, "p", lsn(20), group="gb")
    control.advance_checkpoint(conn, "p", lsn(10))
    conn.run("COMMIT")

    assert control.table_checkpoint(conn, "p", "dbo.a") == lsn(70)
    assert control.table_checkpoint(conn, "p", "dbo.n") == lsn(10)  # no group: the row without a group
    assert control.table_checkpoint(conn, "p", "dbo.never") == lsn(10)  # never registered: likewise
