"""``target.protect`` (issue 17 point 1): the replicated tables refuse writes from sessions that are not
mssql2pg's, with a clear message; the pipeline's own sessions (every connection :func:`target_connector` opens)
write as before; ``false`` removes the guard at the next start.
"""

from __future__ import annotations

from decimal import Decimal

import pg8000.exceptions
import pytest

from mssql2pg.config import Config
from mssql2pg.identifiers import quote_ident
from mssql2pg.model import Operation, SourceColumn
from mssql2pg.pgconn import PgConnector
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.sink import Applier, ApplySettings, build_target_table
from tests.fixtures.target import Connect, TxBuilder, capture_instance

pytestmark = pytest.mark.integration

I = Operation.INSERT  # noqa: E741 - reads like the CDC operation letter

ORDERS = capture_instance(
    "dbo.Orders",
    [SourceColumn("OrderId", 1, "int", nullable=False), SourceColumn("Amount", 2, "decimal", precision=12, scale=2)],
    key=["OrderId"],
)


def mssql2pg_sessions(target_url: str, *, protect: bool) -> PgConnector:
    config = Config.model_validate(
        {"source": {"url": "mssql://u@h/d"}, "target": {"url": target_url, "protect": protect}, "tables": ["a"]}
    )
    return target_connector(config)


def start(connect: PgConnector, protect: bool | None) -> Applier:
    applier = Applier(connect, [build_target_table(ORDERS)], "p", ApplySettings(), protect=protect)
    applier.start()
    return applier


FOREIGN_WRITES = [
    "INSERT INTO dbo.orders (orderid, amount, _cdc_lsn, _cdc_operation) VALUES (9, 1, '\\x00', 2)",
    "UPDATE dbo.orders SET amount = 0",
    "DELETE FROM dbo.orders",
    "TRUNCATE dbo.orders",
]


@pytest.mark.parametrize("statement", FOREIGN_WRITES, ids=["insert", "update", "delete", "truncate"])
def test_a_foreign_write_is_refused_with_a_clear_message_and_the_pipeline_writes(
    target_url: str, target_connect: Connect, statement: str
) -> None:
    connect = mssql2pg_sessions(target_url, protect=True)
    applier = start(connect, True)
    b = TxBuilder()
    applier.offer(b.tx((ORDERS, I, [1, Decimal("1.00")])))
    applier.flush()
    foreign = target_connect()
    with pytest.raises(pg8000.exceptions.DatabaseError) as refused:
        foreign.run(statement)
    fields = refused.value.args[0]
    assert fields["C"] == "42501"
    assert "dbo.orders is replicated by mssql2pg and protected (target.protect)" in fields["M"]
    assert "change the data at the source" in fields["H"]
    # the pipeline goes on writing through the guard
    applier.offer(b.tx((ORDERS, I, [2, Decimal("2.00")])))
    applier.flush()
    assert foreign.run("SELECT orderid FROM dbo.orders ORDER BY 1") == [[1], [2]]
    applier.close()


def test_protect_false_removes_the_guard_and_none_leaves_it_alone(target_url: str, target_connect: Connect) -> None:
    def guarded() -> bool:
        return bool(target_connect().run("SELECT count(*) FROM pg_trigger WHERE tgname = 'mssql2pg_protect'")[0][0])

    connect = mssql2pg_sessions(target_url, protect=True)
    start(connect, True).close()
    assert guarded()
    start(connect, None).close()  # an applier that does not own the setting (catch-up, snapshot, repair)
    assert guarded()
    start(connect, True).close()  # a restart with the guard in place: nothing to do
    assert guarded()
    start(connect, False).close()
    assert not guarded()
    target_connect().run("DELETE FROM dbo.orders")  # foreign writes pass again


def test_a_session_without_the_setting_is_foreign_even_under_the_same_role_and_application_name(
    target_url: str, target_connect: Connect
) -> None:
    connect = mssql2pg_sessions(target_url, protect=True)
    start(connect, True).close()
    foreign = target_connect()
    foreign.run("SET application_name = 'mssql2pg host:1'")
    with pytest.raises(pg8000.exceptions.DatabaseError):
        foreign.run("DELETE FROM dbo.orders")
    foreign.run("SET mssql2pg.writer = 'on'")  # on purpose: the documented way around the guard
    foreign.run("DELETE FROM dbo.orders")


def test_a_table_added_while_running_gets_the_guard(target_url: str, target_connect: Connect) -> None:
    customers = capture_instance("dbo.Customers", [SourceColumn("Id", 1, "int", nullable=False)], key=["Id"])
    applier = start(mssql2pg_sessions(target_url, protect=True), True)
    applier.add_table(build_target_table(customers))
    foreign = target_connect()
    with pytest.raises(pg8000.exceptions.DatabaseError, match=r"dbo\.customers is replicated by mssql2pg"):
        foreign.run("INSERT INTO dbo.customers (id, _cdc_lsn, _cdc_operation) VALUES (1, '\\x00', 2)")
    applier.close()


def test_only_a_pipeline_with_the_guard_marks_its_sessions(target_url: str) -> None:
    """The mark is a startup parameter: a pooler that refuses unknown ones (PgBouncer) must not break pipelines
    that never asked for the guard."""
    setting = "SELECT coalesce(current_setting('mssql2pg.writer', true), '')"
    unguarded = mssql2pg_sessions(target_url, protect=False)()
    guarded = mssql2pg_sessions(target_url, protect=True)()
    try:
        assert unguarded.run(setting) == [[""]]
        assert guarded.run(setting) == [["on"]]
    finally:
        unguarded.close()
        guarded.close()


def test_only_the_setting_on_opens_the_guard(target_url: str, target_connect: Connect) -> None:
    start(mssql2pg_sessions(target_url, protect=True), True).close()
    foreign = target_connect()
    for value in ("off", "false", "x"):
        foreign.run(f"SET mssql2pg.writer = '{value}'")
        with pytest.raises(pg8000.exceptions.DatabaseError, match="protected"):
            foreign.run("DELETE FROM dbo.orders")


def test_the_refusal_names_the_table_as_an_identifier(target_url: str, target_connect: Connect) -> None:
    hostile = capture_instance('dbo.We\'ird "T";--', [SourceColumn("Id", 1, "int", nullable=False)], key=["Id"])
    table = build_target_table(hostile)
    applier = Applier(mssql2pg_sessions(target_url, protect=True), [table], "p", ApplySettings(), protect=True)
    applier.start()
    applier.close()
    with pytest.raises(pg8000.exceptions.DatabaseError) as refused:
        target_connect().run(f"DELETE FROM {table.qualified_name}")
    assert refused.value.args[0]["M"].startswith(f"dbo.{quote_ident(table.name)} is replicated by mssql2pg")
