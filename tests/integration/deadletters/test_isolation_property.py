"""Property: whatever the mix of changes and however they are grouped, isolating refused rows leaves every key
in the state of its last change the target accepted, and only refused changes become dead letters.

The target has a CHECK constraint the source does not have (``v <> 13``), so a change is refused at the
set-based apply (the bisection path), independently of the other rows.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssql2pg.model import Operation, SourceColumn
from mssql2pg.sink import Applier, ApplySettings, build_target_table
from tests.fixtures.target import Connect, TxBuilder, capture_instance

pytestmark = pytest.mark.integration

CI = capture_instance("dbo.P", [SourceColumn("K", 1, "int", nullable=False), SourceColumn("V", 2, "int")], ["K"])
BAD = 13
KEYS = range(5)

step = st.tuples(st.sampled_from(KEYS), st.sampled_from([1, 2, BAD]), st.booleans())
transactions = st.lists(st.lists(step, min_size=1, max_size=6), min_size=1, max_size=8)
_runs = itertools.count()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txs=transactions, group_rows=st.integers(1, 20))
def test_final_state_is_the_last_accepted_change_per_key(
    target_connect: Connect, txs: list[list[tuple[int, int, bool]]], group_rows: int
) -> None:
    conn = target_connect()
    pipeline = f"prop{next(_runs)}"
    applier = Applier(
        target_connect,
        [build_target_table(CI)],
        pipeline,
        ApplySettings(group_max_rows=group_rows, group_max_delay=1e9),
    )
    applier.start()
    conn.run("TRUNCATE dbo.p")
    conn.run("TRUNCATE mssql2pg.dead_letters")
    conn.run("ALTER TABLE dbo.p DROP CONSTRAINT IF EXISTS no13")
    conn.run(f"ALTER TABLE dbo.p ADD CONSTRAINT no13 CHECK (v <> {BAD})")
    source: dict[int, int] = {}  # the (consistent) source table
    expected: dict[int, int] = {}  # the target per the property: last accepted change per key
    b = TxBuilder()
    for tx in txs:
        changes = []
        for key, value, delete in tx:
            if key not in source:
                changes.append((CI, Operation.INSERT, [key, value]))
                source[key] = value
            elif delete:
                changes.append((CI, Operation.DELETE, [key, source.pop(key)]))
            else:
                changes.append((CI, Operation.UPDATE_AFTER, [key, value]))
                source[key] = value
        for _ci, op, (key, value) in changes:
            if op == Operation.DELETE:
                expected.pop(key, None)
            elif value != BAD:
                expected[key] = value
        applier.offer(b.tx(*changes))
    applier.flush()
    applier.close()
    got = dict(conn.run("SELECT k, v FROM dbo.p"))
    refused = conn.run("SELECT (change->'values'->>'V')::int FROM mssql2pg.dead_letters")
    conn.close()
    assert got == expected
    # every dead letter is a refused value (a refused change superseded inside the same set-based apply is never
    # written, so it need not be dead-lettered: the final state is the source's)
    assert all(v == BAD for (v,) in refused)
