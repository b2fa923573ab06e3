"""The applier's tables and capture instances change at source-transaction boundaries while it runs; its group
state is one object. Driven with a recording fake connection (no server): what matters is which statements are
sent, in which order, with which COPY data."""

from __future__ import annotations

import pytest

from mssql2pg.errors import TableFaultError, TerminalError
from mssql2pg.model import ChangeRow, Heartbeat, Operation, SourceColumn, TableId, TxChunk
from mssql2pg.sink import Applier, ApplySettings, TargetTable, build_target_table
from mssql2pg.sink.errors import UnknownCaptureInstanceError
from tests.fixtures.target import TxBuilder, capture_instance, lsn
from tests.unit.sink.fake_pg import FakeCheckpoints, FakePg

INS = Operation.INSERT
ID = SourceColumn("Id", 1, "int", nullable=False)
NAME = SourceColumn("Name", 2, "varchar", max_length=20)
EMAIL = SourceColumn("Email", 3, "varchar", max_length=80)
T_OLD = capture_instance("dbo.T", [ID, NAME], ["Id"], name="dbo_T")
T_NEW = capture_instance("dbo.T", [ID, NAME, EMAIL], ["Id"], name="dbo_T_v2")
U = capture_instance("dbo.U", [ID], ["Id"])


class Harness:
    """An applier over fake connections, with a clock that never moves (commits happen only when asked)."""

    def __init__(self, tables: list[TargetTable]) -> None:
        self.connections: list[FakePg] = []
        self.checkpoints = FakeCheckpoints()
        self.applier = Applier(
            self._connect,
            tables,
            "p",
            ApplySettings(group_max_delay=3600, heartbeat_interval=3600),
            clock=lambda: 0.0,
            checkpoints=self.checkpoints,
        )
        self.tx = TxBuilder()

    def _connect(self) -> FakePg:
        conn = FakePg()
        self.connections.append(conn)
        return conn

    @property
    def conn(self) -> FakePg:
        return self.connections[-1]

    def data(self, staging: int) -> list[list[str]]:
        """The data fields (after the five staging metadata fields) of every line copied into staging ``n``."""
        lines = [
            line
            for copy in self.conn.copies()
            if f'"mssql2pg_stage_{staging}"' in copy.sql
            for line in copy.lines or []
        ]
        return [line.split("\t")[5:] for line in lines]

    def after_start(self, predicate_text: str) -> int:
        return self.conn.index(lambda sql: predicate_text in sql)


def started(*tables: TargetTable) -> Harness:
    harness = Harness(list(tables))
    harness.applier.start()
    return harness


def test_capture_instances_of_one_table_share_its_target_and_staging_table() -> None:
    h = started(build_target_table([T_OLD, T_NEW]))
    h.applier.offer(h.tx.tx((T_OLD, INS, [1, "a"]), (T_NEW, INS, [2, "b", "b@x"])))
    h.applier.flush()

    assert len([s for s in h.conn.sql() if s.startswith("CREATE TEMP TABLE")]) == 1
    assert len([s for s in h.conn.sql() if s.startswith('CREATE TABLE IF NOT EXISTS "dbo"')]) == 1
    assert h.data(0) == [["1", "a", "\\N"], ["2", "b", "b@x"]]
    assert h.checkpoints.written == [lsn(100)]
    assert h.applier.stats.rows[(TableId("dbo", "T"), INS)] == 2


def test_row_of_an_unknown_capture_instance_pauses_its_table() -> None:
    h = started(build_target_table(T_OLD), build_target_table(U))
    h.applier.offer(h.tx.tx((U, INS, [7])))
    with pytest.raises(UnknownCaptureInstanceError) as info:
        h.applier.offer(h.tx.tx((U, INS, [8]), (T_NEW, INS, [1, "a", "a@x"])))

    fault = info.value
    assert isinstance(fault, TableFaultError)
    assert (fault.table, fault.state, fault.capture_instance) == (TableId("dbo", "T"), "paused", "dbo_T_v2")
    assert "dbo_T_v2" in str(fault)
    assert "dbo_T" in str(fault)
    assert "mssql2pg resync dbo.T" in fault.remediation
    assert h.checkpoints.written == []  # the runner abandons the group; nothing of it was committed


def test_row_of_a_table_the_applier_does_not_apply_stops_it() -> None:
    h = started(build_target_table(T_OLD))
    with pytest.raises(TerminalError, match=r"dbo\.U") as info:
        h.applier.offer(h.tx.tx((U, INS, [1])))
    assert not isinstance(info.value, TableFaultError)


def test_plan_changes_only_between_source_transactions() -> None:
    h = started(build_target_table(T_OLD))
    row = ChangeRow(T_OLD.source, T_OLD.name, lsn(100), lsn(99), INS, (1, "a"))
    h.applier.offer(TxChunk(lsn(100), [row], first=True, last=False))
    for change in (
        lambda: h.applier.add_table(build_target_table(U)),
        lambda: h.applier.retire_table(T_OLD.source),
        lambda: h.applier.add_instance(T_NEW),
        lambda: h.applier.apply_plan([]),
    ):
        with pytest.raises(RuntimeError, match="between source transactions"):
            change()
    assert [t.source for t in h.applier.tables] == [T_OLD.source]


def test_adding_a_table_commits_the_group_then_prepares_the_new_table() -> None:
    h = started(build_target_table(T_OLD))
    h.applier.offer(h.tx.tx((T_OLD, INS, [1, "a"])))
    h.applier.add_table(build_target_table(U))

    committed = h.after_start("-- checkpoint")
    created = h.after_start('CREATE TABLE IF NOT EXISTS "dbo"."u"')
    staged = h.after_start('CREATE TEMP TABLE IF NOT EXISTS "mssql2pg_stage_1"')
    assert committed < created < staged
    assert h.checkpoints.written == [lsn(100)]
    assert h.checkpoints.claimed[-1] == ["dbo.U"]
    assert any("table_state" in s and s.lstrip().startswith("INSERT") for s in h.conn.sql()[created:])

    h.applier.offer(h.tx.tx((U, INS, [5]), (T_OLD, INS, [2, "b"])))
    h.applier.flush()
    assert h.data(1) == [["5"]]
    assert h.data(0) == [["1", "a"], ["2", "b"]]
    assert [t.source for t in h.applier.tables] == [T_OLD.source, U.source]


def test_retiring_a_table_drops_its_staging_and_refuses_its_rows() -> None:
    h = started(build_target_table(T_OLD), build_target_table(U))
    h.applier.offer(h.tx.tx((T_OLD, INS, [1, "a"]), (U, INS, [1])))
    h.applier.retire_table(U.source)

    assert h.after_start("-- checkpoint") < h.after_start('DROP TABLE IF EXISTS "mssql2pg_stage_1"')
    assert h.data(1) == [["1"]]  # its rows of the group were applied before it was retired
    assert [t.source for t in h.applier.tables] == [T_OLD.source]
    with pytest.raises(TerminalError) as info:
        h.applier.offer(h.tx.tx((U, INS, [2])))
    assert not isinstance(info.value, TableFaultError)


def test_adding_a_capture_instance_widens_the_table_and_restages_it() -> None:
    h = started(build_target_table(T_OLD))
    h.applier.offer(h.tx.tx((T_OLD, INS, [1, "a"])))
    h.applier.add_instance(T_NEW)

    committed = h.after_start("-- checkpoint")
    restaged = h.after_start('DROP TABLE IF EXISTS "mssql2pg_stage_0"')
    assert committed < restaged
    assert any(s.lstrip().startswith("SELECT a.attname") for s in h.conn.sql()[committed:restaged])  # checked again
    recreated = [s for s in h.conn.sql()[restaged:] if s.startswith("CREATE TEMP TABLE")]
    assert len(recreated) == 1
    assert '"email"' in recreated[0]

    h.applier.offer(h.tx.tx((T_NEW, INS, [2, "b", "b@x"]), (T_OLD, INS, [3, "c"])))
    h.applier.flush()
    assert h.data(0)[-2:] == [["2", "b", "b@x"], ["3", "c", "\\N"]]
    (table,) = h.applier.tables
    assert table.instances == (T_OLD, T_NEW)


def test_an_instance_with_the_same_columns_needs_no_new_staging() -> None:
    same = capture_instance("dbo.T", [ID, NAME], ["Id"], name="dbo_T_again")
    h = started(build_target_table(T_OLD))
    before = len(h.conn.statements)
    h.applier.add_instance(same)
    assert not any("stage" in s for s in h.conn.sql()[before:])
    h.applier.offer(h.tx.tx((same, INS, [1, "a"])))
    h.applier.flush()
    assert h.data(0) == [["1", "a"]]


def test_the_same_plan_built_again_needs_nothing_from_the_target() -> None:
    h = started(build_target_table([T_OLD, T_NEW]), build_target_table(U))
    before = len(h.conn.statements)
    h.applier.apply_plan([build_target_table([T_OLD, T_NEW]), build_target_table(U)])
    assert h.conn.statements[before:] == []
    h.applier.offer(h.tx.tx((T_NEW, INS, [1, "a", "e"])))
    h.applier.flush()
    assert h.data(0) == [["1", "a", "e"]]


def test_retiring_a_capture_instance_makes_its_rows_unknown() -> None:
    h = started(build_target_table([T_OLD, T_NEW]))
    h.applier.retire_instance("dbo_T")
    with pytest.raises(UnknownCaptureInstanceError, match="capture instance dbo_T,"):
        h.applier.offer(h.tx.tx((T_OLD, INS, [1, "a"])))
    h.applier.abandon()  # what the runner does after a fault, before it starts again
    h.applier.start()
    with pytest.raises(ValueError, match="last capture instance"):
        h.applier.retire_instance("dbo_T_v2")
    with pytest.raises(ValueError, match=r"dbo\.Z"):
        h.applier.add_instance(capture_instance("dbo.Z", [ID], ["Id"]))


def test_apply_plan_converges_to_the_tables_it_is_given() -> None:
    h = started(build_target_table(T_OLD), build_target_table(U))
    z = capture_instance("dbo.Z", [ID], ["Id"])
    h.applier.apply_plan([build_target_table([T_OLD, T_NEW]), build_target_table(z)])

    assert [t.source for t in h.applier.tables] == [T_OLD.source, z.source]
    assert h.after_start('DROP TABLE IF EXISTS "mssql2pg_stage_1"') >= 0  # U retired
    assert h.after_start('CREATE TEMP TABLE IF NOT EXISTS "mssql2pg_stage_2"') >= 0  # Z staged anew
    h.applier.offer(h.tx.tx((T_NEW, INS, [1, "a", "e"]), (z, INS, [9])))
    h.applier.flush()
    assert h.data(0) == [["1", "a", "e"]]
    assert h.data(2) == [["9"]]


def test_a_plan_before_start_touches_no_connection() -> None:
    h = Harness([build_target_table(T_OLD)])
    h.applier.add_table(build_target_table(U))
    h.applier.retire_table(T_OLD.source)
    assert h.connections == []
    h.applier.start()
    assert h.checkpoints.claimed == [["dbo.U"]]
    assert len([s for s in h.conn.sql() if s.startswith("CREATE TEMP TABLE")]) == 1


def test_two_tables_for_one_source_table_are_refused() -> None:
    with pytest.raises(ValueError, match=r"dbo\.T"):
        Harness([build_target_table(T_OLD), build_target_table(T_NEW)])
    h = started(build_target_table(T_OLD))
    with pytest.raises(ValueError, match=r"dbo\.T"):
        h.applier.add_table(build_target_table(T_NEW))


def test_the_group_is_one_object_emptied_by_every_commit_and_rollback() -> None:
    h = started(build_target_table(T_OLD))
    h.applier.offer(h.tx.tx((T_OLD, INS, [1, "a"]), (T_OLD, INS, [2, "b"])))
    h.applier.offer(Heartbeat(lsn(150)))
    group = h.applier.group
    assert (group.transactions, group.rows, group.pending_lsn) == (1, 2, lsn(150))
    assert group.buffers[T_OLD.source].counts[INS] == 2
    assert not group.is_empty

    h.applier.flush()
    assert h.applier.group.is_empty
    assert h.applier.group.buffers[T_OLD.source].lines == []
    assert h.checkpoints.written == [lsn(150)]

    row = ChangeRow(T_OLD.source, T_OLD.name, lsn(200), lsn(199), INS, (3, "c"))
    h.applier.offer(TxChunk(lsn(200), [row], first=True, last=False))
    assert h.applier.mid_transaction()
    h.applier.abandon()
    assert h.applier.group.is_empty
    assert not h.applier.mid_transaction()
