"""A target crash in the middle of a group loses nothing and duplicates nothing once the applier restarts."""

from __future__ import annotations

from decimal import Decimal

import pg8000.native
import pytest

from mssql2pg.model import Operation, SourceColumn
from mssql2pg.sink import Applier, ApplySettings, build_target_table
from tests.fixtures.pg import PgServer
from tests.fixtures.target import TxBuilder, capture_instance

pytestmark = pytest.mark.integration

T = capture_instance(
    "dbo.Ledger", [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Amount", 2, "money")], ["Id"]
)


def test_crash_before_commit_then_redelivery_applies_exactly_once(fresh_server: PgServer) -> None:
    db = fresh_server.create_database("dw")
    applier = Applier(
        lambda: fresh_server.connect(db),
        [build_target_table(T)],
        "crash",
        ApplySettings(group_max_rows=1_000, group_max_delay=3600, stage_rows=2),
    )
    assert applier.start().is_null
    b = TxBuilder()
    first = [b.tx((T, Operation.INSERT, [i, Decimal(i)])) for i in range(1, 4)]
    for item in first:
        applier.offer(item)
    applier.flush()
    committed = applier.stats.checkpoint
    second = [b.tx((T, Operation.INSERT, [i, Decimal(i)])) for i in range(4, 10)]
    for item in second:
        applier.offer(item)  # staged (stage_rows=2) inside an open PostgreSQL transaction, not committed
    fresh_server.stop("immediate")
    with pytest.raises((pg8000.native.InterfaceError, pg8000.native.DatabaseError, OSError)):
        applier.flush()
    applier.abandon()
    fresh_server.start()
    assert applier.start() == committed
    for item in first + second:  # the reader re-delivers from before the checkpoint: harmless
        applier.offer(item)
    applier.flush()
    applier.close()
    conn = fresh_server.connect(db)
    assert conn.run("SELECT id FROM dbo.ledger ORDER BY id") == [[i] for i in range(1, 10)]
    assert applier.stats.transactions == 9  # 3 before the crash + 6 after; the re-delivered 3 were skipped
    conn.close()
