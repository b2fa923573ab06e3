"""Accuracy (issue 13, point 6): a consistent target corrupted at random, over many seeds, in every way the
issue lists (rows deleted and added, a single value of every mapped type changed, NULL <-> '', a microsecond, a
trailing space, a case change, a byte): the comparison finds exactly the corrupted keys and no others.

Each example corrupts the target inside a transaction, compares through that same connection, and rolls back,
so every example starts from the same consistent pair."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssql2pg.pipeline.connections import source_engine
from mssql2pg.pipeline.plan import discover, target_tables
from mssql2pg.reconcile import compare
from mssql2pg.reconcile.run import sides
from mssql2pg.sink.schema import TargetTable
from tests.integration.reconcile.conftest import Replicated

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Corruption:
    kind: str
    sql: str  # an UPDATE/DELETE of dbo.typed for one row, ``{id}`` filled in
    applies: str  # which rows it changes (a condition on i = id, in Python)


CHANGES = [
    Corruption("tinyint", "UPDATE dbo.typed SET c_tiny = (c_tiny + 1) % 256 WHERE id = {id}", "True"),
    Corruption("smallint", "UPDATE dbo.typed SET c_small = c_small # 1 WHERE id = {id}", "True"),
    Corruption("bigint", "UPDATE dbo.typed SET c_big = c_big # 1 WHERE id = {id}", "True"),
    Corruption("bit", "UPDATE dbo.typed SET c_bit = NOT c_bit WHERE id = {id}", "True"),
    Corruption("decimal", "UPDATE dbo.typed SET c_dec = c_dec + 0.001 WHERE id = {id}", "True"),
    Corruption("money", "UPDATE dbo.typed SET c_money = c_money - 0.0001 WHERE id = {id}", "True"),
    Corruption("real", "UPDATE dbo.typed SET c_real = c_real + 0.5 WHERE id = {id}", "True"),
    Corruption("float ulp", "UPDATE dbo.typed SET c_float = c_float * (1 + 4.5e-16) WHERE id = {id}", "True"),
    Corruption("date", "UPDATE dbo.typed SET c_date = c_date + 1 WHERE id = {id}", "True"),
    Corruption("time microsecond", "UPDATE dbo.typed SET c_time = c_time + interval '1 us' WHERE id = {id}", "True"),
    Corruption("datetime2 microsecond", "UPDATE dbo.typed SET c_dt2 = c_dt2 - interval '1 us' WHERE id = {id}", "True"),
    Corruption("datetime", "UPDATE dbo.typed SET c_datetime = c_datetime + interval '1 ms' WHERE id = {id}", "True"),
    Corruption("smalldatetime", "UPDATE dbo.typed SET c_sdt = c_sdt + interval '1 min' WHERE id = {id}", "True"),
    Corruption(
        "datetimeoffset instant", "UPDATE dbo.typed SET c_dto = c_dto + interval '1 us' WHERE id = {id}", "True"
    ),
    Corruption(
        "datetimeoffset offset", "UPDATE dbo.typed SET c_dto_offset = c_dto_offset + 60 WHERE id = {id}", "True"
    ),
    Corruption("trailing space", "UPDATE dbo.typed SET c_nvarchar = c_nvarchar || ' ' WHERE id = {id}", "i % 7 > 1"),
    Corruption("case", "UPDATE dbo.typed SET c_nvarchar = upper(c_nvarchar) WHERE id = {id}", "i % 7 > 1"),
    Corruption("NULL to ''", "UPDATE dbo.typed SET c_nvarchar = '' WHERE id = {id}", "i % 7 == 0"),
    Corruption("'' to NULL", "UPDATE dbo.typed SET c_nvarchar = NULL WHERE id = {id}", "i % 7 == 1"),
    Corruption("text '' to NULL", "UPDATE dbo.typed SET c_text = NULL WHERE id = {id}", "i % 5 == 0"),
    Corruption("text character", "UPDATE dbo.typed SET c_text = c_text || 'x' WHERE id = {id}", "True"),
    Corruption(
        "a byte",
        "UPDATE dbo.typed SET c_bin = set_byte(c_bin, 1, (get_byte(c_bin, 1) + 1) % 256) WHERE id = {id}",
        "True",
    ),
    Corruption("uuid", "UPDATE dbo.typed SET c_uuid = md5(c_uuid::text)::uuid WHERE id = {id}", "True"),
]
DELETE = Corruption("row deleted", "DELETE FROM dbo.typed WHERE id = {id}", "True")
ADD = Corruption("row added", "INSERT INTO dbo.typed (id, _cdc_lsn, _cdc_operation) VALUES ({id}, '\\x00', 2)", "True")


@st.composite
def corruptions(draw: st.DrawFn, rows: int) -> list[tuple[int, Corruption]]:
    """Distinct rows, each with one corruption that really changes it (``applies``)."""
    ids = draw(st.lists(st.integers(1, rows), min_size=1, max_size=12, unique=True))
    out = []
    for i in ids:
        usable = [c for c in [*CHANGES, DELETE] if eval(c.applies, {"i": i})]  # noqa: S307 - our own constants
        out.append((i, draw(st.sampled_from(usable))))
    extra = draw(st.lists(st.integers(rows + 1, rows + 1000), max_size=3, unique=True))
    out.extend((i, ADD) for i in extra)
    return out


@pytest.fixture
def typed(replicated: Replicated) -> Iterator[tuple[Replicated, TargetTable]]:
    engine = source_engine(replicated.config)
    selections, instances = discover(engine, replicated.config)
    (table,) = [t for t in target_tables(selections, instances) if t.name == "typed"]
    yield replicated, table
    engine.dispose()


def test_every_corruption_kind_is_reachable() -> None:
    assert len({c.kind for c in CHANGES}) == len(CHANGES) >= 20


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), leaf_rows=st.sampled_from([0, 3, compare.LEAF_ROWS]))
def test_exactly_the_corrupted_keys_are_found(
    typed: tuple[Replicated, TargetTable], data: st.DataObject, leaf_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair, table = typed
    monkeypatch.setattr(compare, "LEAF_ROWS", leaf_rows)  # 0: narrowed down to single keys; else leaves earlier
    chosen = data.draw(corruptions(pair.rows))
    engine = source_engine(pair.config)
    dst = pair.dst
    dst.run("BEGIN")
    try:
        for i, corruption in chosen:
            dst.run(corruption.sql.format(id=i))
            assert dst.row_count == 1, corruption.kind
        with engine.connect() as src_conn:
            source, target = sides(src_conn, dst, table)
            found = compare.compare_table(source, target)
    finally:
        dst.run("ROLLBACK")
        engine.dispose()

    def ids(keys: dict[str, tuple[object, ...]]) -> set[object]:
        return {k[0] for k in keys.values()}

    assert ids(found.missing) == {i for i, c in chosen if c is DELETE}
    assert ids(found.extra) == {i for i, c in chosen if c is ADD}
    assert ids(found.different) == {i for i, c in chosen if c not in (DELETE, ADD)}, [(i, c.kind) for i, c in chosen]
