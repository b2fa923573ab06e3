"""Reader-contract violations fail loudly; generated values round-trip through the real COPY parser."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssql2pg.errors import TerminalError
from mssql2pg.model import ChangeRow, Heartbeat, Operation, SourceColumn, TableId, TxChunk
from mssql2pg.sink import Applier, build_target_table
from tests.fixtures.target import Connect, TxBuilder, capture_instance, lsn

pytestmark = pytest.mark.integration

T = capture_instance(
    "dbo.P",
    [
        SourceColumn("Id", 1, "int", nullable=False),
        SourceColumn("S", 2, "nvarchar", max_length=-1),
        SourceColumn("D", 3, "decimal", precision=20, scale=6),
    ],
    ["Id"],
)


@pytest.fixture
def applier(target_connect: Connect) -> Applier:
    a = Applier(target_connect, [build_target_table(T)], "proto")
    a.start()
    return a


def test_offer_before_start_is_a_programming_error(target_connect: Connect) -> None:
    with pytest.raises(RuntimeError, match="before start"):
        Applier(target_connect, [build_target_table(T)], "x").offer(Heartbeat(lsn(1)))


def test_continuation_chunk_without_first_chunk_is_refused(applier: Applier) -> None:
    with pytest.raises(TerminalError, match="without its first chunk"):
        applier.offer(TxChunk(lsn(200), [], first=False, last=True))


def test_heartbeat_inside_an_open_transaction_is_refused(applier: Applier) -> None:
    applier.offer(TxChunk(lsn(200), [], first=True, last=False))
    with pytest.raises(TerminalError, match="inside source transaction"):
        applier.offer(Heartbeat(lsn(201)))


def test_new_transaction_before_the_last_chunk_is_refused(applier: Applier) -> None:
    applier.offer(TxChunk(lsn(200), [], first=True, last=False))
    with pytest.raises(TerminalError, match="without its last chunk"):
        applier.offer(TxChunk(lsn(201), [], first=True, last=True))


def test_change_for_an_unconfigured_capture_instance_is_refused(applier: Applier) -> None:
    row = ChangeRow(TableId("dbo", "Other"), "dbo_Other", lsn(200), lsn(199), Operation.INSERT, (1,))
    with pytest.raises(TerminalError, match="not configured"):
        applier.offer(TxChunk(lsn(200), [row]))


def test_row_with_the_wrong_number_of_values_is_refused(applier: Applier) -> None:
    with pytest.raises(TerminalError, match="has 2 values"):
        applier.offer(TxBuilder().tx((T, Operation.INSERT, [1, "x"])))


text_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
decimals = st.decimals(min_value=Decimal("-99999999999999"), max_value=Decimal("99999999999999"), places=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.none() | text_values, st.none() | decimals), min_size=1, max_size=20))
def test_generated_values_round_trip_through_postgres(
    target_connect: Connect, values: list[tuple[str | None, Decimal | None]]
) -> None:
    applier = Applier(target_connect, [build_target_table(T)], "prop")
    start = applier.start()
    b = TxBuilder(start=(start.to_int() >> 16) + 1 if not start.is_null else 100)
    applier.offer(b.tx(*[(T, Operation.INSERT, [i, s, d]) for i, (s, d) in enumerate(values)]))
    applier.flush()
    applier.close()
    conn = target_connect()
    got = conn.run("SELECT s, d FROM dbo.p ORDER BY id")
    conn.run("TRUNCATE dbo.p")
    conn.close()
    assert [tuple(r) for r in got] == values
