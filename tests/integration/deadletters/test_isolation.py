"""Dirty data ends in ``mssql2pg.dead_letters`` with a readable reason; the rest of the batch, its source
transaction and the other tables still apply, exactly once.

Changes are fed to the :class:`Applier` directly (the reader boundary): values like NUL in text or unpaired
UTF-16 surrogates cannot exist in the emulator's PostgreSQL source, so this is the only place to inject them.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from mssql2pg.model import Operation, SourceColumn
from mssql2pg.sink import Applier, ApplySettings, build_target_table
from mssql2pg.sink.deadletters import row_from_payload
from tests.fixtures.target import Connect, TxBuilder, capture_instance

pytestmark = pytest.mark.integration

INS, DEL = Operation.INSERT, Operation.DELETE

PEOPLE = capture_instance(
    "dbo.People",
    [
        SourceColumn("Id", 1, "int", nullable=False),
        SourceColumn("Name", 2, "nvarchar", max_length=40),
        SourceColumn("Born", 3, "date"),
        SourceColumn("Score", 4, "decimal", precision=6, scale=2),
        SourceColumn("Email", 5, "varchar", max_length=100),
    ],
    key=["Id"],
)
ORDERS = capture_instance(
    "dbo.Orders",
    [SourceColumn("OrderId", 1, "int", nullable=False), SourceColumn("PersonId", 2, "int")],
    key=["OrderId"],
)
BORN = date(1990, 5, 17)


def person(i: int, name: str = "ok", email: str | None = None, born: object = BORN, score: object = None) -> list:
    return [i, name, born, Decimal("1.50") if score is None else score, email or f"p{i}@example.org"]


def query(connect: Connect, sql: str) -> list[list[object]]:
    conn = connect()
    try:
        return conn.run(sql)
    finally:
        conn.close()


def letters(connect: Connect) -> list[dict[str, object]]:
    rows = query(
        connect,
        "SELECT id, source_table, commit_lsn_text, operation, source_tran_id, change, error_class, message, stack, "
        "status, retry_count FROM mssql2pg.dead_letters ORDER BY id",
    )
    keys = ["id", "table", "lsn", "op", "tran", "change", "error_class", "message", "stack", "status", "retries"]
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for letter in out:
        if isinstance(letter["change"], str):
            letter["change"] = json.loads(letter["change"])
    return out


def make(connect: Connect, **settings: object) -> Applier:
    tables = [build_target_table(PEOPLE), build_target_table(ORDERS)]
    applier = Applier(connect, tables, "p", ApplySettings(**settings))  # type: ignore[arg-type]
    applier.start()
    return applier


def ids(connect: Connect, table: str = "dbo.people") -> list[int]:
    key = "orderid" if "orders" in table else "id"
    return [r[0] for r in query(connect, f"SELECT {key} FROM {table} ORDER BY 1")]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (person(2, name="nul\x00inside"), "NUL character"),
        (person(2, name="half \ud800 pair"), "unpaired UTF-16 surrogate"),
        (person(2, score=Decimal("123456.7")), "integer digits"),  # out of range for decimal(6,2)
        (person(2, born="0000-00-00"), "expected a date"),  # a value that violates the declared type
        (person(2, name="x" * 41), "longer than the column"),
    ],
    ids=["nul-in-text", "unpaired-surrogate", "numeric-out-of-range", "wrong-type", "too-long"],
)
def test_value_the_target_cannot_store_is_dead_lettered_and_the_rest_applies(
    target_connect: Connect, bad: list[object], reason: str
) -> None:
    applier = make(target_connect)
    b = TxBuilder()
    tx = b.tx((PEOPLE, INS, person(1)), (PEOPLE, INS, bad), (PEOPLE, INS, person(3)), (ORDERS, INS, [10, 1]))
    tx = type(tx)(
        tx.commit_lsn, tx.rows, commit_time=tx.commit_time, tran_id=b"\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08"
    )
    applier.offer(tx)
    applier.flush()
    assert ids(target_connect) == [1, 3]
    assert ids(target_connect, "dbo.orders") == [10]
    [letter] = letters(target_connect)
    assert letter["table"] == "dbo.People"
    assert letter["lsn"] == str(tx.commit_lsn)
    assert letter["op"] == int(INS)
    assert letter["tran"] == bytes.fromhex("00000102030405060708")
    assert letter["status"] == "pending"
    assert reason in str(letter["message"])
    assert "Name" in str(letter["message"]) or "Score" in str(letter["message"]) or "Born" in str(letter["message"])
    change = letter["change"]
    assert isinstance(change, dict)
    assert change["source_tran_id"] == "00000102030405060708"
    assert change["seqval"] == str(tx.rows[1].seqval)
    # the stored change round-trips to exactly the values that arrived, even the ones jsonb cannot hold
    assert row_from_payload(change, build_target_table(PEOPLE)).values == tuple(bad)
    assert applier.stats.checkpoint == tx.commit_lsn
    applier.close()


@pytest.mark.libxml
def test_xml_postgresql_rejects_during_copy_is_isolated(target_connect: Connect) -> None:
    docs = capture_instance(
        "dbo.Docs", [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Doc", 2, "xml")], ["Id"]
    )
    applier = Applier(target_connect, [build_target_table(docs)], "p")
    applier.start()
    b = TxBuilder()
    applier.offer(b.tx((docs, INS, [1, "<a/>"]), (docs, INS, [2, "<a>"]), (docs, INS, [3, "<b/>"])))
    applier.offer(b.tx((docs, INS, [4, "<c/>"])))
    applier.flush()
    assert ids(target_connect, "dbo.docs") == [1, 3, 4]
    [letter] = letters(target_connect)
    assert letter["error_class"] == "DatabaseError [2200N]"
    assert "invalid XML content" in str(letter["message"])
    assert letter["change"]["values"] == {"Id": 2, "Doc": "<a>"}  # type: ignore[index]
    applier.close()


def test_extra_unique_index_on_the_target_dead_letters_only_the_conflicting_row(target_connect: Connect) -> None:
    applier = make(target_connect)
    query(target_connect, "CREATE UNIQUE INDEX people_email ON dbo.people (email)")
    b = TxBuilder()
    applier.offer(b.tx((PEOPLE, INS, person(1, email="same@x")), (ORDERS, INS, [10, 1])))
    applier.offer(b.tx(*[(PEOPLE, INS, person(i)) for i in range(2, 40)], (PEOPLE, INS, person(40, email="same@x"))))
    applier.offer(b.tx((ORDERS, INS, [11, 2])))
    applier.flush()
    assert ids(target_connect) == list(range(1, 40))
    assert ids(target_connect, "dbo.orders") == [10, 11]
    [letter] = letters(target_connect)
    assert letter["change"]["values"]["Id"] == 40  # type: ignore[index]
    assert letter["error_class"] == "DatabaseError [23505]"
    assert "people_email" in str(letter["message"])
    assert applier.stats.dead_letters[PEOPLE.source] == 1
    assert applier.stats.rows[(PEOPLE.source, INS)] == 39
    applier.close()


def test_target_foreign_key_the_source_does_not_have(target_connect: Connect) -> None:
    applier = make(target_connect)
    query(target_connect, "ALTER TABLE dbo.orders ADD FOREIGN KEY (personid) REFERENCES dbo.people (id)")
    b = TxBuilder()
    applier.offer(
        b.tx((PEOPLE, INS, person(1)), (ORDERS, INS, [10, 1]), (ORDERS, INS, [11, 99]), (ORDERS, INS, [12, 1]))
    )
    applier.flush()
    assert ids(target_connect, "dbo.orders") == [10, 12]
    [letter] = letters(target_connect)
    assert letter["error_class"] == "DatabaseError [23503]"
    assert "foreign key" in str(letter["message"])
    assert letter["change"]["values"] == {"OrderId": 11, "PersonId": 99}  # type: ignore[index]
    applier.close()


def test_a_later_good_change_of_a_dead_lettered_key_wins_and_an_earlier_one_stays(target_connect: Connect) -> None:
    applier = make(target_connect)
    query(target_connect, "CREATE UNIQUE INDEX people_email ON dbo.people (email)")
    b = TxBuilder()
    applier.offer(b.tx((PEOPLE, INS, person(1, email="taken@x"))))
    applier.flush()
    # key 2: a bad insert then a good update (same group); key 3: a good insert then a bad update
    applier.offer(b.tx((PEOPLE, INS, person(2, email="taken@x")), (PEOPLE, INS, person(3, name="first"))))
    applier.offer(b.update(PEOPLE, person(2, email="taken@x"), person(2, name="fixed", email="two@x")))
    applier.offer(b.update(PEOPLE, person(3, name="first"), person(3, name="second", email="taken@x")))
    applier.flush()
    rows = query(target_connect, "SELECT id, name, email FROM dbo.people ORDER BY id")
    assert rows == [[1, "ok", "taken@x"], [2, "fixed", "two@x"], [3, "first", "p3@example.org"]]
    assert sorted((lt["change"]["values"]["Id"], lt["op"]) for lt in letters(target_connect)) == [(2, 2), (3, 4)]  # type: ignore[index]
    applier.close()


def test_write_swallowed_by_a_target_trigger_is_a_dead_letter_not_a_silent_loss(target_connect: Connect) -> None:
    applier = make(target_connect)
    query(
        target_connect,
        "CREATE FUNCTION dbo.swallow() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.name = 'swallow me' THEN RETURN NULL; END IF; RETURN NEW; END $$",
    )
    query(
        target_connect,
        "CREATE TRIGGER swallow BEFORE INSERT OR UPDATE ON dbo.people FOR EACH ROW EXECUTE FUNCTION dbo.swallow()",
    )
    b = TxBuilder()
    applier.offer(b.tx((PEOPLE, INS, person(1)), (PEOPLE, INS, person(2, name="swallow me")), (PEOPLE, INS, person(3))))
    applier.flush()
    assert ids(target_connect) == [1, 3]
    [letter] = letters(target_connect)
    assert letter["error_class"] == "WriteMismatchError"
    assert "did not write 1 change" in str(letter["message"])
    assert letter["change"]["values"]["Id"] == 2  # type: ignore[index]
    applier.close()


def test_a_rolled_back_group_leaves_no_dead_letter_and_redelivery_records_it_once(target_connect: Connect) -> None:
    applier = make(target_connect)
    b = TxBuilder()
    tx = b.tx((PEOPLE, INS, person(1)), (PEOPLE, INS, person(2, name="bad\x00")))
    applier.offer(tx)
    applier.abandon()  # a crash before the commit
    assert query(target_connect, "SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
    assert applier.start().is_null
    applier.offer(tx)
    applier.flush()
    applier.offer(tx)  # re-delivery of an applied transaction changes nothing
    applier.flush()
    assert len(letters(target_connect)) == 1
    assert ids(target_connect) == [1]
    applier.close()


def test_isolation_inside_a_streamed_transaction_copied_early(target_connect: Connect) -> None:
    applier = make(target_connect, stage_rows=10)
    query(target_connect, "CREATE UNIQUE INDEX people_email ON dbo.people (email)")
    b = TxBuilder()
    chunks = list(
        b.chunks(PEOPLE, iter([person(i, email="dup@x" if i in (5, 77) else None) for i in range(1, 101)]), 25)
    )
    for chunk in chunks:
        applier.offer(chunk)
    applier.flush()
    assert ids(target_connect) == [i for i in range(1, 101) if i != 77]
    assert [lt["change"]["values"]["Id"] for lt in letters(target_connect)] == [77]  # type: ignore[index]
    applier.close()


def test_stale_changes_are_applied_flagged_and_counted(target_connect: Connect) -> None:
    now = datetime(2026, 1, 10, 12, 0, 0)
    tables = [build_target_table(PEOPLE), build_target_table(ORDERS)]
    applier = Applier(target_connect, tables, "p", ApplySettings(stale_after=3600), wall_clock=lambda: now)
    applier.start()
    b = TxBuilder()
    query(target_connect, "CREATE UNIQUE INDEX people_email ON dbo.people (email)")
    old = now - timedelta(hours=2)
    # a stale change that is dead-lettered is not counted as a stale event applied
    applier.offer(
        b.tx(
            (PEOPLE, INS, person(1)),
            (PEOPLE, INS, person(2)),
            (PEOPLE, INS, person(9, email="p1@example.org")),
            commit_time=old,
        )
    )
    applier.offer(b.tx((PEOPLE, INS, person(3)), commit_time=now - timedelta(minutes=5)))
    # a fresh change of a stale-flagged row clears the flag
    applier.offer(b.tx((PEOPLE, DEL, person(2)), (PEOPLE, INS, person(2, name="fresh")), commit_time=now))
    applier.flush()
    rows = query(target_connect, "SELECT id, name, _cdc_stale FROM dbo.people ORDER BY id")
    assert rows == [[1, "ok", True], [2, "fresh", False], [3, "ok", False]]
    assert applier.stats.stale == {PEOPLE.source: 2}
    assert applier.stats.dead_letters == {PEOPLE.source: 1}
    applier.close()


def test_stale_flag_on_the_bulk_insert_path(target_connect: Connect) -> None:
    now = datetime(2026, 1, 10, 12, 0, 0)
    applier = Applier(target_connect, [build_target_table(ORDERS)], "p", ApplySettings(), wall_clock=lambda: now)
    applier.start()
    b = TxBuilder()
    old = b.tx(*[(ORDERS, INS, [i, 1]) for i in range(10_000)], commit_time=now - timedelta(days=2))
    applier.offer(old)
    applier.flush()
    assert query(target_connect, "SELECT count(*) FROM dbo.orders WHERE _cdc_stale") == [[10_000]]
    assert applier.stats.stale[ORDERS.source] == 10_000
    applier.close()


@pytest.mark.parametrize(
    ("errcode", "kind"),
    [("40001", "transient"), ("42501", "table")],
    ids=["serialization-failure-is-retried", "permission-error-stops"],
)
def test_faults_that_are_not_about_a_row_propagate_and_nothing_is_dead_lettered(
    target_connect: Connect, errcode: str, kind: str
) -> None:
    from mssql2pg.classify import classify  # noqa: PLC0415
    from mssql2pg.errors import TransientError  # noqa: PLC0415

    applier = make(target_connect)
    query(
        target_connect,
        "CREATE FUNCTION dbo.fail() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN IF NEW.name = 'boom' THEN RAISE EXCEPTION 'injected' USING ERRCODE = '{errcode}'; END IF; "
        "RETURN NEW; END $$",
    )
    query(target_connect, "CREATE TRIGGER fail BEFORE INSERT ON dbo.people FOR EACH ROW EXECUTE FUNCTION dbo.fail()")
    b = TxBuilder()
    applier.offer(b.tx((PEOPLE, INS, person(1)), (PEOPLE, INS, person(2, name="boom"))))
    with pytest.raises(Exception) as info:  # noqa: PT011 - the driver's error, classified below
        applier.flush()
    assert isinstance(classify(info.value), TransientError) is (kind == "transient")
    applier.abandon()
    assert query(target_connect, "SELECT count(*) FROM dbo.people") == [[0]]
    assert query(target_connect, "SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
    assert applier.start().is_null
    applier.close()


@pytest.mark.libxml
def test_copy_rejection_while_streaming_a_large_transaction_is_isolated_at_commit(target_connect: Connect) -> None:
    docs = capture_instance(
        "dbo.Docs", [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Doc", 2, "xml")], ["Id"]
    )
    applier = Applier(target_connect, [build_target_table(docs)], "p", ApplySettings(stage_rows=7))
    applier.start()
    b = TxBuilder()
    values = iter([[i, "<broken>" if i in (3, 58) else f"<d n='{i}'/>"] for i in range(1, 61)])
    for chunk in b.chunks(docs, values, 10):
        applier.offer(chunk)
    applier.flush()
    assert ids(target_connect, "dbo.docs") == [i for i in range(1, 61) if i not in (3, 58)]
    assert [lt["change"]["values"]["Id"] for lt in letters(target_connect)] == [3, 58]  # type: ignore[index]
    assert applier.stats.rows[(docs.source, INS)] == 58
    applier.close()


def test_a_row_the_reader_could_not_decode_is_dead_lettered_and_never_applied(target_connect: Connect) -> None:
    """Read-side validation: the reader marks a row whose value it could not decode (``ChangeRow.fault``); the
    applier dead-letters it as ``SourceValueError`` with the raw value, and the rest of the transaction applies."""
    applier = make(target_connect)
    b = TxBuilder()
    # the faulty row's values would be storable: only the fault mark keeps it out of the target
    tx = b.tx((PEOPLE, INS, person(1)), (PEOPLE, INS, person(2, name="twelve")), (ORDERS, INS, [10, 1]))
    fault = "dbo.People: value read from capture instance dbo_People refused: column Born (date): cannot decode"
    rows = list(tx.rows)
    rows[1] = dataclasses.replace(rows[1], fault=fault)
    applier.offer(dataclasses.replace(tx, rows=tuple(rows)))
    applier.offer(b.update(PEOPLE, person(1), person(1, name="changed")))
    applier.flush()

    assert ids(target_connect) == [1]
    assert query(target_connect, "SELECT name FROM dbo.people") == [["changed"]]
    assert ids(target_connect, "dbo.orders") == [10]
    [letter] = letters(target_connect)
    assert letter["error_class"] == "SourceValueError"
    assert letter["message"] == fault
    assert letter["change"]["values"]["Name"] == "twelve"  # type: ignore[index]
    assert letter["change"]["source_fault"] == fault  # type: ignore[index]
    assert applier.stats.dead_letters[PEOPLE.source] == 1
    assert applier.stats.rows[(PEOPLE.source, INS)] == 1
    applier.close()
