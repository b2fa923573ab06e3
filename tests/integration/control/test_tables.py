"""Table state in ``mssql2pg.table_state``: registered by every start, a paused table stays paused."""

from __future__ import annotations

import pytest

from mssql2pg.model import SourceColumn
from mssql2pg.sink import Applier, build_target_table
from tests.fixtures.target import Connect, capture_instance, wait_until_tables_released

pytestmark = pytest.mark.integration

T = capture_instance("dbo.T", [SourceColumn("Id", 1, "int", nullable=False)], ["Id"])


def test_paused_table_stays_paused_on_restart(target_connect: Connect) -> None:
    applier = Applier(target_connect, [build_target_table(T)], "p")
    applier.start()
    applier.close()
    conn = target_connect()
    conn.run("UPDATE mssql2pg.table_state SET state = 'paused', reason = 'dead letters'")
    wait_until_tables_released(conn)  # the restart claims the same table
    again = Applier(target_connect, [build_target_table(T)], "p")
    again.start()
    again.close()
    assert conn.run("SELECT state, reason FROM mssql2pg.table_state") == [["paused", "dead letters"]]
    conn.close()
