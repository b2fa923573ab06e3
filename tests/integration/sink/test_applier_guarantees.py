"""The applier's guarantees: exactly once across restarts, atomic multi-table transactions, streamed huge
transactions, monotonic checkpoints, refusal of incompatible targets, hostile names, row-level value errors."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from mssql2pg.control import advance_checkpoint, read_checkpoint
from mssql2pg.errors import ConfigError, IncompatibleTargetError, TerminalError
from mssql2pg.model import Heartbeat, Operation, SourceColumn, TableId
from mssql2pg.sink import Applier, ApplySettings, TableOptions, UnstorableValueError, build_target_table
from mssql2pg.sink import applier as applier_module
from tests.fixtures.target import Connect, TxBuilder, capture_instance, lsn

pytestmark = pytest.mark.integration

INS, DEL = Operation.INSERT, Operation.DELETE

ACCOUNTS_A = capture_instance(
    "bank.AccountsA",
    [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Amount", 2, "money")],
    key=["Id"],
)
ACCOUNTS_B = capture_instance(
    "bank.AccountsB",
    [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Amount", 2, "money")],
    key=["Id"],
)


def _all(connect: Connect, sql: str) -> list[list[object]]:
    conn = connect()
    try:
        return conn.run(sql)
    finally:
        conn.close()


def test_reapplying_the_same_items_after_restart_changes_nothing(target_connect: Connect) -> None:
    tables = [build_target_table(ACCOUNTS_A)]
    b = TxBuilder()
    items = [
        b.tx((ACCOUNTS_A, INS, [1, Decimal("1.0000")]), (ACCOUNTS_A, INS, [2, Decimal("2.0000")])),
        b.update(ACCOUNTS_A, [1, Decimal("1.0000")], [1, Decimal("5.0000")]),
        b.tx((ACCOUNTS_A, DEL, [2, Decimal("2.0000")])),
        Heartbeat(lsn(10_000)),
    ]
    first = Applier(target_connect, tables, "p1")
    assert first.start().is_null
    for item in items:
        first.offer(item)
    first.flush()
    first.close()
    snapshot = _all(target_connect, "SELECT *, xmin::text FROM bank.accountsa ORDER BY id")
    assert [r[:2] for r in snapshot] == [[1, Decimal("5.0000")]]

    second = Applier(target_connect, tables, "p1")
    assert second.start() == lsn(10_000)
    for item in items:
        second.offer(item)
    second.flush()
    second.close()
    # same values, same applied_at, same row version (xmin): nothing was written again
    assert _all(target_connect, "SELECT *, xmin::text FROM bank.accountsa ORDER BY id") == snapshot
    assert second.stats.transactions == 0


def test_checkpoint_only_moves_forward(target_connect: Connect) -> None:
    applier = Applier(target_connect, [build_target_table(ACCOUNTS_A)], "p1")
    applier.start()
    applier.offer(Heartbeat(lsn(50)))
    applier.close()
    conn = target_connect()
    conn.run("BEGIN")
    with pytest.raises(TerminalError, match="backwards"):
        advance_checkpoint(conn, "p1", lsn(49))
    conn.run("ROLLBACK")
    assert read_checkpoint(conn, "p1") == lsn(50)
    advance_checkpoint(conn, "p1", lsn(50))  # equal is fine (idempotent)
    assert read_checkpoint(conn, "p1") == lsn(50)


def test_multi_table_transactions_are_atomic_to_a_concurrent_reader(target_connect: Connect) -> None:
    total = Decimal("1000.0000")
    applier = Applier(
        target_connect,
        [build_target_table(ACCOUNTS_A), build_target_table(ACCOUNTS_B)],
        "bank",
        ApplySettings(group_max_rows=7, group_max_delay=60),
    )
    applier.start()
    b = TxBuilder()
    applier.offer(b.tx((ACCOUNTS_A, INS, [1, total]), (ACCOUNTS_B, INS, [1, Decimal(0)])))
    applier.flush()
    stop = threading.Event()
    seen: list[Decimal] = []
    errors: list[BaseException] = []

    def watch() -> None:
        conn = target_connect()
        try:
            while not stop.is_set():
                rows = conn.run(
                    "SELECT (SELECT coalesce(sum(amount), 0) FROM bank.accountsa)"
                    " + (SELECT coalesce(sum(amount), 0) FROM bank.accountsb)"
                )
                seen.append(rows[0][0])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            conn.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    a = total
    for i in range(120):
        moved = Decimal(i % 7 + 1)
        old_a, a = a, a - moved
        applier.offer(
            b.tx(
                (ACCOUNTS_A, Operation.UPDATE_BEFORE, [1, old_a]),
                (ACCOUNTS_A, Operation.UPDATE_AFTER, [1, a]),
                (ACCOUNTS_B, INS, [i + 10, moved]),
            )
        )
    applier.flush()
    stop.set()
    watcher.join()
    applier.close()
    assert not errors
    assert len(seen) > 1
    assert set(seen) == {total}
    assert _all(target_connect, "SELECT amount FROM bank.accountsa") == [[a]]


@pytest.mark.slow
def test_million_row_transaction_is_streamed_in_chunks_into_one_commit(target_connect: Connect) -> None:
    big = capture_instance(
        "dbo.Big", [SourceColumn("Id", 1, "bigint", nullable=False), SourceColumn("V", 2, "int")], key=["Id"]
    )
    n = 1_000_000
    applier = Applier(target_connect, [build_target_table(big)], "big", ApplySettings(stage_rows=25_000))
    applier.start()
    b = TxBuilder()
    chunks = b.chunks(big, ((i, i % 1000) for i in range(n)), 10_000)
    watcher = target_connect()
    for count, chunk in enumerate(chunks, start=1):
        applier.offer(chunk)
        if count == 50:  # half way: rows are staged, nothing is visible, the checkpoint has not moved
            assert watcher.run("SELECT count(*) FROM dbo.big") == [[0]]
            assert read_checkpoint(watcher, "big").is_null
    applier.flush()
    assert watcher.run("SELECT count(*), sum(v), min(id), max(id) FROM dbo.big") == [
        [n, sum(i % 1000 for i in range(n)), 0, n - 1]
    ]
    assert read_checkpoint(watcher, "big") == applier.stats.checkpoint
    assert applier.stats.commits == 1
    assert applier.stats.rows[(big.source, INS)] == n
    applier.close()


def test_a_partly_received_transaction_is_rolled_back_on_flush(target_connect: Connect) -> None:
    applier = Applier(target_connect, [build_target_table(ACCOUNTS_A)], "p", ApplySettings(stage_rows=2))
    applier.start()
    b = TxBuilder()
    applier.offer(b.tx((ACCOUNTS_A, INS, [1, Decimal(1)])))
    chunks = list(b.chunks(ACCOUNTS_A, iter([(i, Decimal(i)) for i in range(10, 20)]), 3))
    applier.offer(chunks[0])
    applier.offer(chunks[1])
    applier.flush()
    assert _all(target_connect, "SELECT id FROM bank.accountsa") == [[1]]
    assert applier.stats.checkpoint == lsn(100)
    applier.close()


def test_insert_only_bulk_path_keeps_newer_rows_and_updates_older_ones(
    target_connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(applier_module, "BULK_INSERT_ROWS", 1)
    table = build_target_table(ACCOUNTS_A, TableOptions(delete_mode="soft"))
    applier = Applier(target_connect, [table], "p")
    applier.start()
    b = TxBuilder()
    applier.offer(b.tx((ACCOUNTS_A, INS, [1, Decimal(1)]), (ACCOUNTS_A, INS, [2, Decimal(2)])))
    applier.offer(b.tx((ACCOUNTS_A, DEL, [1, Decimal(1)])))
    applier.flush()
    applier.offer(b.tx((ACCOUNTS_A, INS, [1, Decimal(7)]), (ACCOUNTS_A, INS, [3, Decimal(3)])))
    applier.flush()
    assert _all(target_connect, "SELECT id, amount, _cdc_deleted FROM bank.accountsa ORDER BY id") == [
        [1, Decimal("7.0000"), False],
        [2, Decimal("2.0000"), False],
        [3, Decimal("3.0000"), False],
    ]
    applier.close()


def test_incompatible_existing_table_is_refused_with_what_differs(target_connect: Connect) -> None:
    conn = target_connect()
    conn.run("CREATE SCHEMA bank")
    conn.run("CREATE TABLE bank.accountsa (id integer, amount numeric(10,2), PRIMARY KEY (amount))")
    applier = Applier(target_connect, [build_target_table(ACCOUNTS_A)], "p")
    with pytest.raises(IncompatibleTargetError) as info:
        applier.start()
    text = str(info.value)
    assert "'amount' is numeric(10,2), which cannot hold numeric(19,4)" in text
    assert "'_cdc_lsn' (bytea) is missing" in text
    assert "primary key is (amount), expected (id)" in text
    assert "hint:" in text
    applier.close()


def test_compatible_wider_existing_table_is_accepted(target_connect: Connect) -> None:
    first = Applier(target_connect, [build_target_table(ACCOUNTS_A)], "p")
    first.start()
    first.close()
    conn = target_connect()
    conn.run("ALTER TABLE bank.accountsa ALTER COLUMN id TYPE bigint, ADD COLUMN note text")
    again = Applier(target_connect, [build_target_table(ACCOUNTS_A)], "p")
    again.start()
    again.offer(TxBuilder().tx((ACCOUNTS_A, INS, [1, Decimal(1)])))
    again.flush()
    assert conn.run("SELECT id, note FROM bank.accountsa") == [[1, None]]
    again.close()


HOSTILE = capture_instance(
    TableId('we"ird; DROP', "Tä[b]le 🚀"),
    [
        SourceColumn('I"d', 1, "int", nullable=False),
        SourceColumn("select;--", 2, "nvarchar", max_length=20),
        SourceColumn("Ünï [x]", 3, "datetimeoffset", scale=7),
    ],
    key=['I"d'],
    name="hostile_ci",
)


def test_hostile_identifiers_and_values_replicate_exactly(target_connect: Connect) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    table = build_target_table(HOSTILE, TableOptions(naming="preserve"))
    applier = Applier(target_connect, [table], "hostile")
    applier.start()
    value = "'); DROP TABLE x; --"
    applier.offer(TxBuilder().tx((HOSTILE, INS, [1, value, datetime(2024, 1, 1, tzinfo=UTC)])))
    applier.flush()
    rows = _all(target_connect, 'SELECT "I""d", "select;--", "Ünï [x]_offset" FROM "we""ird; DROP"."Tä[b]le 🚀"')
    assert rows == [[1, value, 0]]
    applier.close()


def test_lower_casing_collision_is_a_config_error() -> None:
    ci = capture_instance(
        "dbo.T", [SourceColumn("Id", 1, "int"), SourceColumn("ID", 2, "int"), SourceColumn("x", 3, "int")], ["Id"]
    )
    with pytest.raises(ConfigError, match="both become target column 'id'"):
        build_target_table(ci)
    assert build_target_table(ci, TableOptions(naming="preserve")).column_names[:2] == ("Id", "ID")


def test_table_without_key_is_refused() -> None:
    ci = capture_instance("dbo.NoKey", [SourceColumn("x", 1, "int")], [])
    with pytest.raises(ConfigError, match="no primary key or unique index"):
        build_target_table(ci)


def test_unstorable_value_is_dead_lettered_naming_table_column_and_row(target_connect: Connect) -> None:
    ci = capture_instance(
        "dbo.Notes", [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Body", 2, "nvarchar")], ["Id"]
    )
    applier = Applier(target_connect, [build_target_table(ci)], "p")
    applier.start()
    chunk = TxBuilder().tx((ci, INS, [1, "fine"]), (ci, INS, [2, "bad\x00text"]))
    applier.offer(chunk)
    applier.flush()
    assert _all(target_connect, "SELECT id, body FROM dbo.notes") == [[1, "fine"]]
    letters = _all(
        target_connect,
        "SELECT source_table, operation, commit_lsn_text, error_class, message FROM mssql2pg.dead_letters",
    )
    assert letters == [
        ["dbo.Notes", 2, str(chunk.commit_lsn), "UnstorableValueError", letters[0][4]],
    ]
    assert "dbo.Notes.Body" in letters[0][4]
    assert "NUL" in letters[0][4]
    assert applier.stats.dead_letters[ci.source] == 1
    applier.close()


@pytest.mark.libxml
def test_copy_rejection_points_at_the_row(target_connect: Connect) -> None:
    ci = capture_instance(
        "dbo.Docs", [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Doc", 2, "xml")], ["Id"]
    )
    # without isolation (a transaction too big to keep for bisection) the COPY error still names its row
    applier = Applier(target_connect, [build_target_table(ci)], "p", ApplySettings(isolate_max_rows=0))
    applier.start()
    chunk = TxBuilder().tx((ci, INS, [1, "<a/>"]), (ci, INS, [2, "<a>"]), (ci, INS, [3, "<b/>"]))
    applier.offer(chunk)
    with pytest.raises(UnstorableValueError) as info:
        applier.flush()
    assert info.value.row is chunk.rows[1]
    assert info.value.column == "Doc"
    assert "xml" in info.value.reason.lower()
    applier.abandon()


def test_changes_never_overwrite_or_delete_a_row_carrying_a_later_commit_lsn(target_connect: Connect) -> None:
    applier = Applier(target_connect, [build_target_table(ACCOUNTS_A)], "p")
    applier.start()
    b = TxBuilder()
    applier.offer(b.tx((ACCOUNTS_A, INS, [1, Decimal(1)]), (ACCOUNTS_A, INS, [2, Decimal(2)])))
    applier.flush()
    conn = target_connect()
    # e.g. a resync already wrote these rows as of a later source position
    conn.run("UPDATE bank.accountsa SET _cdc_lsn = :l, amount = amount + 100", l=lsn(9_999).raw)
    applier.offer(b.update(ACCOUNTS_A, [1, Decimal(1)], [1, Decimal(5)]))
    applier.offer(b.tx((ACCOUNTS_A, DEL, [2, Decimal(2)])))
    applier.flush()
    assert conn.run("SELECT id, amount FROM bank.accountsa ORDER BY id") == [
        [1, Decimal("101.0000")],
        [2, Decimal("102.0000")],
    ]
    applier.close()
