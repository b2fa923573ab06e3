"""Applier behaviour against a real PostgreSQL target: each operation, delete modes, key changes, grouping."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mssql2pg.model import Heartbeat, Operation, SourceColumn
from mssql2pg.sink import Applier, ApplySettings, TableOptions, build_target_table
from mssql2pg.sink.schema import TargetTable
from tests.fixtures.target import Connect, TxBuilder, capture_instance, lsn

pytestmark = pytest.mark.integration

I, D = Operation.INSERT, Operation.DELETE  # noqa: E741 - reads like the CDC operation letters

ORDERS = capture_instance(
    "dbo.Orders",
    [
        SourceColumn("OrderId", 1, "int", nullable=False),
        SourceColumn("Customer", 2, "nvarchar", max_length=50),
        SourceColumn("Amount", 3, "decimal", precision=12, scale=2),
    ],
    key=["OrderId"],
)


def table(mode: str = "hard") -> TargetTable:
    return build_target_table(ORDERS, TableOptions(delete_mode=mode))  # type: ignore[arg-type]


def rows(connect: Connect, extra: str = "") -> list[list[object]]:
    conn = connect()
    try:
        return conn.run(f"SELECT orderid, customer, amount{extra} FROM dbo.orders ORDER BY orderid")
    finally:
        conn.close()


def make(connect: Connect, mode: str = "hard", **settings: float) -> Applier:
    applier = Applier(connect, [table(mode)], "test", ApplySettings(**settings))  # type: ignore[arg-type]
    applier.start()
    return applier


def test_insert_update_delete_are_visible(target_connect: Connect) -> None:
    applier = make(target_connect)
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, [1, "ann", Decimal("10.50")]), (ORDERS, I, [2, "bob", Decimal("3.00")])))
    applier.flush()
    assert rows(target_connect) == [[1, "ann", Decimal("10.50")], [2, "bob", Decimal("3.00")]]
    applier.offer(b.update(ORDERS, [1, "ann", Decimal("10.50")], [1, "ann", Decimal("11.75")]))
    applier.flush()
    assert rows(target_connect) == [[1, "ann", Decimal("11.75")], [2, "bob", Decimal("3.00")]]
    applier.offer(b.tx((ORDERS, D, [2, "bob", Decimal("3.00")])))
    applier.flush()
    assert rows(target_connect) == [[1, "ann", Decimal("11.75")]]
    assert applier.stats.transactions == 3
    assert applier.stats.rows[(ORDERS.source, I)] == 2
    applier.close()


def test_soft_delete_keeps_last_values_and_flags_the_row(target_connect: Connect) -> None:
    applier = make(target_connect, "soft")
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, [1, "ann", Decimal("1.00")])))
    applier.offer(b.update(ORDERS, [1, "ann", Decimal("1.00")], [1, "ann", Decimal("2.00")]))
    applier.offer(b.tx((ORDERS, D, [1, "ann", Decimal("2.00")])))
    applier.flush()
    assert rows(target_connect, ", _cdc_deleted, _cdc_operation") == [[1, "ann", Decimal("2.00"), True, 1]]
    applier.offer(b.tx((ORDERS, I, [1, "ann again", Decimal("5.00")])))
    applier.flush()
    assert rows(target_connect, ", _cdc_deleted") == [[1, "ann again", Decimal("5.00"), False]]
    applier.close()


def test_primary_key_update_as_delete_insert_pair_and_as_update_pair(target_connect: Connect) -> None:
    applier = make(target_connect)
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, [1, "ann", Decimal("1.00")]), (ORDERS, I, [2, "bob", Decimal("2.00")])))
    # deferred update: op 1 with the old key, op 2 with the new key, one transaction
    applier.offer(b.tx((ORDERS, D, [1, "ann", Decimal("1.00")]), (ORDERS, I, [10, "ann", Decimal("1.00")])))
    # in-place update of the key: op 3 / op 4 with the same seqval
    applier.offer(b.update(ORDERS, [2, "bob", Decimal("2.00")], [20, "bob", Decimal("2.00")]))
    applier.flush()
    assert rows(target_connect) == [[10, "ann", Decimal("1.00")], [20, "bob", Decimal("2.00")]]
    applier.close()


def test_delete_then_reinsert_ends_present_and_insert_then_delete_ends_absent(target_connect: Connect) -> None:
    applier = make(target_connect)
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, [1, "ann", Decimal("1.00")])))
    applier.flush()
    applier.offer(b.tx((ORDERS, D, [1, "ann", Decimal("1.00")]), (ORDERS, I, [1, "ann2", Decimal("9.00")])))
    applier.offer(b.tx((ORDERS, I, [2, "tmp", Decimal("0.00")])))
    applier.offer(b.tx((ORDERS, D, [2, "tmp", Decimal("0.00")])))
    applier.flush()
    assert rows(target_connect) == [[1, "ann2", Decimal("9.00")]]
    applier.close()


def test_small_transactions_share_one_postgres_commit_until_a_bound(target_connect: Connect) -> None:
    now = [0.0]
    applier = Applier(
        target_connect, [table()], "test", ApplySettings(group_max_rows=3, group_max_delay=10), clock=lambda: now[0]
    )
    applier.start()
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, [1, "a", Decimal(1)])))
    applier.offer(b.tx((ORDERS, I, [2, "b", Decimal(2)])))
    assert rows(target_connect) == []  # neither bound reached: still grouped, not committed
    applier.offer(b.tx((ORDERS, I, [3, "c", Decimal(3)])))
    assert len(rows(target_connect)) == 3  # row bound reached at a transaction boundary
    assert applier.stats.commits == 1
    applier.offer(b.tx((ORDERS, I, [4, "d", Decimal(4)])))
    applier.tick()
    assert len(rows(target_connect)) == 3
    now[0] = 11.0
    applier.tick()  # time bound passed
    assert len(rows(target_connect)) == 4
    applier.close()


def test_heartbeat_advances_checkpoint_at_most_once_per_interval(target_connect: Connect) -> None:
    now = [100.0]
    applier = Applier(target_connect, [table()], "hb", ApplySettings(heartbeat_interval=1.0), clock=lambda: now[0])
    assert applier.start().is_null
    applier.offer(Heartbeat(lsn(5)))
    assert applier.stats.checkpoint == lsn(5)
    applier.offer(Heartbeat(lsn(6)))
    assert applier.stats.checkpoint == lsn(5)  # throttled
    now[0] += 1.5
    applier.tick()
    assert applier.stats.checkpoint == lsn(6)
    applier.close()
    again = Applier(target_connect, [table()], "hb")
    assert again.start() == lsn(6)
    again.close()


def test_soft_delete_keeps_legacy_lob_values_that_sql_server_leaves_null(target_connect: Connect) -> None:
    notes = capture_instance(
        "dbo.Notes",
        [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Body", 2, "ntext"), SourceColumn("N", 3, "int")],
        key=["Id"],
    )
    applier = Applier(target_connect, [build_target_table(notes, TableOptions(delete_mode="soft"))], "lob")
    applier.start()
    b = TxBuilder()
    applier.offer(b.tx((notes, I, [1, "long body", 5])))
    applier.offer(b.tx((notes, D, [1, None, 5])))  # SQL Server writes NULL for text/ntext/image in delete rows
    applier.flush()
    conn = target_connect()
    assert conn.run("SELECT body, n, _cdc_deleted FROM dbo.notes") == [["long body", 5, True]]
    applier.offer(b.tx((notes, I, [2, "two", 1]), (notes, I, [3, "three", 1])))
    applier.flush()
    applier.offer(b.update(notes, [2, None, 1], [2, "two v2", 2]))
    applier.offer(b.tx((notes, D, [2, None, 2])))  # updated then deleted in one batch: the update's value stays
    applier.offer(b.tx((notes, I, [4, "four", 1])))  # a non-delete in the same batch is untouched
    applier.flush()
    applier.offer(b.tx((notes, D, [3, None, 1])))  # deleted alone: the committed value stays
    applier.flush()
    assert conn.run("SELECT id, body, n, _cdc_deleted FROM dbo.notes ORDER BY id") == [
        [1, "long body", 5, True],
        [2, "two v2", 2, True],
        [3, "three", 1, True],
        [4, "four", 1, False],
    ]
    applier.close()
