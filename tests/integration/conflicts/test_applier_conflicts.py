"""Writes to the target by someone else (issue 17 point 1), at the applier: the target is written behind the
pipeline's back, then the source changes the same keys. Each conflict is detected, counted (stats and
``mssql2pg.target_conflicts``, in the apply's own transaction) and logged once; the final state follows the
table's ``on_target_conflict`` policy exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import structlog

from mssql2pg.model import Operation, SourceColumn
from mssql2pg.sink import Applier, ApplySettings, TableOptions, build_target_table
from mssql2pg.sink.applier import BULK_INSERT_ROWS
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


def order(i: int, customer: str = "ann", amount: str = "1.00") -> list[Any]:
    return [i, customer, Decimal(amount)]


def table(policy: str = "source-wins", mode: str = "hard") -> TargetTable:
    return build_target_table(ORDERS, TableOptions(delete_mode=mode, on_target_conflict=policy))  # type: ignore[arg-type]


def run(connect: Connect, sql: str, **params: Any) -> list[list[Any]]:
    conn = connect()
    try:
        return conn.run(sql, **params)
    finally:
        conn.close()


def rows(connect: Connect) -> list[list[Any]]:
    return run(connect, "SELECT orderid, customer, amount FROM dbo.orders WHERE NOT _cdc_deleted ORDER BY orderid")


def stored_conflicts(connect: Connect) -> dict[tuple[str, str], int]:
    found = run(connect, "SELECT source_table, kind, conflicts FROM mssql2pg.target_conflicts WHERE pipeline = 'p'")
    return {(t, k): int(n) for t, k, n in found}


def letters(connect: Connect) -> list[tuple[str, int, int]]:
    found = run(connect, "SELECT error_class, operation, change FROM mssql2pg.dead_letters ORDER BY id")
    out = []
    for error_class, op, change in found:
        payload = change if isinstance(change, dict) else json.loads(change)
        out.append((error_class, op, payload["values"]["OrderId"]))
    return out


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def conflict_lines(logs: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (e["table"], e["kind"], e["key"])
        for e in logs
        if e["event"] == "target conflict: the target table was written by someone else"
    ]


def make(
    connect: Connect, policy: str = "source-wins", mode: str = "hard", *, detect: bool = True, **settings: Any
) -> Applier:
    applier = Applier(connect, [table(policy, mode)], "p", ApplySettings(**settings), detect_conflicts=detect)
    applier.start()
    return applier


def behind_the_back(connect: Connect, b: TxBuilder, applier: Applier) -> None:
    """Rows 1..5 replicated; then someone deletes 1 and 5, inserts 4 (with a _cdc_lsn of their own, older than
    anything the pipeline writes) and re-stamps 2 with a _cdc_lsn later than any change to come."""
    applier.offer(b.tx(*[(ORDERS, I, order(i)) for i in (1, 2, 3, 5)]))
    applier.flush()
    run(connect, "DELETE FROM dbo.orders WHERE orderid IN (1, 5)")
    insert = "INSERT INTO dbo.orders (orderid, customer, amount, _cdc_lsn, _cdc_operation) VALUES (4, 'x', 9, :l, 2)"
    run(connect, insert, l=lsn(1).raw)
    run(connect, "UPDATE dbo.orders SET customer = 'y', _cdc_lsn = :l WHERE orderid = 2", l=lsn(10**6).raw)


def source_changes(b: TxBuilder, applier: Applier) -> None:
    """The source goes on, unaware: updates 1 and 2, deletes 5, inserts 4, updates 3 (no conflict)."""
    applier.offer(b.update(ORDERS, order(1), order(1, "ann", "2.00")))
    applier.offer(b.update(ORDERS, order(2), order(2, "bob", "2.00")))
    applier.offer(b.tx((ORDERS, D, order(5))))
    applier.offer(b.tx((ORDERS, I, order(4, "dan", "4.00"))))
    applier.offer(b.update(ORDERS, order(3), order(3, "cy", "3.00")))
    applier.flush()


EXPECTED = {
    ("dbo.Orders", "update_missing"): 1,
    ("dbo.Orders", "delete_missing"): 1,
    ("dbo.Orders", "insert_exists"): 1,
    ("dbo.Orders", "foreign_lsn"): 1,
}


def test_source_wins_detects_counts_and_logs_each_conflict_once_and_applies_the_source(
    target_connect: Connect, logs: list[dict[str, Any]]
) -> None:
    applier = make(target_connect)
    b = TxBuilder()
    behind_the_back(target_connect, b, applier)
    source_changes(b, applier)
    assert {(str(t), k): n for (t, k), n in applier.stats.conflicts.items()} == EXPECTED
    assert stored_conflicts(target_connect) == EXPECTED
    assert sorted(conflict_lines(logs)) == [
        ("dbo.Orders", "delete_missing", {"orderid": 5}),
        ("dbo.Orders", "foreign_lsn", {"orderid": 2}),
        ("dbo.Orders", "insert_exists", {"orderid": 4}),
        ("dbo.Orders", "update_missing", {"orderid": 1}),
    ]
    # the source wins: 1 re-inserted, 4 overwritten, 5 stays deleted; 2 keeps the row stamped with a later LSN
    # (the LSN guard, as before: only a later source change overwrites it), reported
    assert rows(target_connect) == [
        [1, "ann", Decimal("2.00")],
        [2, "y", Decimal("1.00")],
        [3, "cy", Decimal("3.00")],
        [4, "dan", Decimal("4.00")],
    ]
    assert letters(target_connect) == []
    # once detected, nothing more: the source's next changes to the same keys are no conflict
    applier.offer(b.update(ORDERS, order(1, "ann", "2.00"), order(1, "ann", "5.00")))
    applier.offer(b.update(ORDERS, order(4, "dan", "4.00"), order(4, "dan", "5.00")))
    applier.flush()
    assert stored_conflicts(target_connect) == EXPECTED
    assert len(conflict_lines(logs)) == 4
    applier.close()


@pytest.mark.parametrize("isolate_max_rows", [200_000, 1], ids=["rows-kept", "group-too-big-to-keep-rows"])
def test_dead_letter_keeps_the_target_rows_and_dead_letters_the_changes_with_their_kind(
    target_connect: Connect, logs: list[dict[str, Any]], isolate_max_rows: int
) -> None:
    # a group too big to keep its rows for isolation (retained is None) still builds the dead letters
    applier = make(target_connect, "dead-letter", isolate_max_rows=isolate_max_rows)
    b = TxBuilder()
    behind_the_back(target_connect, b, applier)
    source_changes(b, applier)
    assert stored_conflicts(target_connect) == EXPECTED
    assert sorted(letters(target_connect)) == [
        ("TargetConflictError [delete_missing]", 1, 5),
        ("TargetConflictError [foreign_lsn]", 4, 2),
        ("TargetConflictError [insert_exists]", 2, 4),
        ("TargetConflictError [update_missing]", 4, 1),
    ]
    assert rows(target_connect) == [[2, "y", Decimal("1.00")], [3, "cy", Decimal("3.00")], [4, "x", Decimal("9.00")]]
    assert applier.stats.dead_letters[ORDERS.source] == 4
    assert applier.stats.rows[(ORDERS.source, Operation.UPDATE_AFTER)] == 1  # 3's update; 1's and 2's set aside
    assert len(conflict_lines(logs)) == 4
    # later changes follow the same rules: 1 is still missing (its next update is set aside too); 4 exists, so
    # an update of it applies over the row that was kept
    applier.offer(b.update(ORDERS, order(1, "ann", "2.00"), order(1, "ann", "5.00")))
    applier.offer(b.update(ORDERS, order(4, "dan", "4.00"), order(4, "dan", "5.00")))
    applier.flush()
    assert stored_conflicts(target_connect)[("dbo.Orders", "update_missing")] == 2
    assert rows(target_connect)[-1] == [4, "dan", Decimal("5.00")]
    applier.close()


def test_insert_then_update_in_one_batch_is_no_conflict_and_a_batch_judges_each_keys_first_change(
    target_connect: Connect,
) -> None:
    applier = make(target_connect, "dead-letter")
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, order(1)), (ORDERS, I, order(2))))
    applier.offer(b.update(ORDERS, order(1), order(1, "ann", "2.00")))
    applier.offer(b.tx((ORDERS, D, order(2))))
    applier.offer(b.tx((ORDERS, I, order(2, "bo"))))
    applier.flush()
    assert stored_conflicts(target_connect) == {}
    # someone deletes 1; the source updates it twice, then deletes and re-inserts it, all in one batch
    run(target_connect, "DELETE FROM dbo.orders WHERE orderid = 1")
    applier.offer(b.update(ORDERS, order(1, "ann", "2.00"), order(1, "ann", "3.00")))
    applier.offer(b.update(ORDERS, order(1, "ann", "3.00"), order(1, "ann", "4.00")))
    applier.offer(b.tx((ORDERS, D, order(1, "ann", "4.00"))))
    applier.offer(b.tx((ORDERS, I, order(1, "new", "7.00"))))
    applier.flush()
    # the two updates and the delete are set aside; the insert applies (the key is absent in the target)
    expected = {("dbo.Orders", "update_missing"): 2, ("dbo.Orders", "delete_missing"): 1}
    assert stored_conflicts(target_connect) == expected
    assert rows(target_connect) == [[1, "new", Decimal("7.00")], [2, "bo", Decimal("1.00")]]
    applier.close()


def test_soft_delete_a_reinsert_over_a_soft_deleted_row_is_no_conflict(target_connect: Connect) -> None:
    applier = make(target_connect, mode="soft")
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, order(1))))
    applier.offer(b.tx((ORDERS, D, order(1))))
    applier.flush()
    applier.offer(b.tx((ORDERS, I, order(1, "again"))))
    applier.flush()
    assert stored_conflicts(target_connect) == {}
    # someone soft-deletes it by hand: the source's update meets a row the pipeline did not delete
    run(target_connect, "UPDATE dbo.orders SET _cdc_deleted = true WHERE orderid = 1")
    applier.offer(b.update(ORDERS, order(1, "again"), order(1, "again", "2.00")))
    applier.flush()
    assert stored_conflicts(target_connect) == {("dbo.Orders", "update_missing"): 1}
    assert rows(target_connect) == [[1, "again", Decimal("2.00")]]
    applier.close()


def test_primary_key_update_is_no_conflict(target_connect: Connect) -> None:
    applier = make(target_connect, "dead-letter")
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, order(1))))
    applier.flush()
    applier.offer(b.update(ORDERS, order(1), order(10)))
    applier.flush()
    assert stored_conflicts(target_connect) == {}
    assert rows(target_connect) == [[10, "ann", Decimal("1.00")]]
    applier.close()


@pytest.mark.parametrize("policy", ["source-wins", "dead-letter"])
def test_bulk_insert_path_detects_keys_inserted_in_the_target(target_connect: Connect, policy: str) -> None:
    applier = make(target_connect, policy)
    run(target_connect, "CREATE SCHEMA IF NOT EXISTS dbo")
    run(
        target_connect,
        "INSERT INTO dbo.orders (orderid, customer, amount, _cdc_lsn, _cdc_operation) VALUES (7, 'x', 9, :l, 2)",
        l=lsn(1).raw,
    )
    b = TxBuilder()
    applier.offer(b.tx(*[(ORDERS, I, order(i, "bulk")) for i in range(1, BULK_INSERT_ROWS + 1)]))
    applier.flush()
    assert stored_conflicts(target_connect) == {("dbo.Orders", "insert_exists"): 1}
    kept = run(target_connect, "SELECT customer FROM dbo.orders WHERE orderid = 7")
    assert kept == [["bulk" if policy == "source-wins" else "x"]]
    assert run(target_connect, "SELECT count(*) FROM dbo.orders") == [[BULK_INSERT_ROWS]]
    assert len(letters(target_connect)) == (policy == "dead-letter")
    applier.close()


def test_without_detection_nothing_is_judged(target_connect: Connect) -> None:
    """Catch-up after a resync, snapshots and repairs apply with detection off: their re-deliveries are legit."""
    applier = make(target_connect, detect=False)
    b = TxBuilder()
    behind_the_back(target_connect, b, applier)
    source_changes(b, applier)
    assert stored_conflicts(target_connect) == {}
    assert dict(applier.stats.conflicts) == {}
    applier.close()


def test_a_group_rolled_back_and_isolated_counts_its_conflicts_once(target_connect: Connect) -> None:
    applier = make(target_connect, "dead-letter")
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, order(1)), (ORDERS, I, order(2))))
    applier.flush()
    run(target_connect, "DELETE FROM dbo.orders WHERE orderid = 1")
    run(target_connect, "ALTER TABLE dbo.orders ADD CONSTRAINT positive CHECK (amount >= 0)")
    # a row the target refuses (its own constraint) rolls the group back and isolates its rows by bisection
    applier.offer(b.update(ORDERS, order(1), order(1, "ann", "2.00")))
    applier.offer(b.tx((ORDERS, I, order(3, "neg", "-1.00"))))
    applier.offer(b.tx((ORDERS, I, order(4))))
    applier.flush()
    assert stored_conflicts(target_connect) == {("dbo.Orders", "update_missing"): 1}
    assert sorted((e, key) for e, _op, key in letters(target_connect)) == [
        ("DatabaseError [23514]", 3),
        ("TargetConflictError [update_missing]", 1),
    ]
    assert rows(target_connect) == [[2, "ann", Decimal("1.00")], [4, "ann", Decimal("1.00")]]
    applier.close()


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_several_changes_of_a_key_in_one_batch_are_judged_by_the_first(target_connect: Connect, mode: str) -> None:
    applier = make(target_connect, mode=mode)
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, order(1)), (ORDERS, I, order(2))))
    applier.flush()
    run(target_connect, "DELETE FROM dbo.orders WHERE orderid = 1")  # someone deletes 1 and inserts 8
    insert = "INSERT INTO dbo.orders (orderid, customer, amount, _cdc_lsn, _cdc_operation) VALUES (8, 'x', 9, :l, 2)"
    run(target_connect, insert, l=lsn(1).raw)
    # one batch: 1 deleted and inserted again by the source; 8 inserted and deleted; 2 updated twice
    applier.offer(b.tx((ORDERS, D, order(1)), (ORDERS, I, order(1, "again"))))
    applier.offer(b.tx((ORDERS, I, order(8, "src"))))
    applier.offer(b.tx((ORDERS, D, order(8, "src"))))
    applier.offer(b.update(ORDERS, order(2), order(2, "ann", "2.00")))
    applier.offer(b.update(ORDERS, order(2, "ann", "2.00"), order(2, "ann", "3.00")))
    applier.flush()
    assert stored_conflicts(target_connect) == {("dbo.Orders", "delete_missing"): 1, ("dbo.Orders", "insert_exists"): 1}
    assert rows(target_connect) == [[1, "again", Decimal("1.00")], [2, "ann", Decimal("3.00")]]
    applier.close()
