"""Schema changes: emulator-only cases (capture timing, concurrency, injection safety, catalog views).

The behaviour checked against SQL Server is in test_schema_evolution.py; these cases pin down how the emulator
gets there (agent mode, locks, generated code) and the facts only PostgreSQL can break (dollar quoting)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pg8000.native
import pytest

from mssql2pg.emulator import connect, scan, set_capture_mode
from tests.fixtures.emulator import enable_table
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(emulated_source_url: str) -> Iterator[pg8000.native.Connection]:
    c = connect(emulated_source_url)
    c.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY, v int)")
    enable_table(c, "dbo", "t")
    yield c
    c.close()


def _lsns(conn: pg8000.native.Connection, ci: str) -> dict[int, bytes]:
    """id -> __$start_lsn of the rows of a change table."""
    rows = conn.run(f'SELECT id, "__$start_lsn" FROM cdc."{ci}_CT"')
    return {int(r[0]): bytes(r[1]) for r in rows}


def test_ddl_history_is_written_by_the_capture_scan_with_the_ddl_commit_lsn(
    conn: pg8000.native.Connection, emulated_source_url: str
) -> None:
    """§1.4 + MS sp_cdc_get_ddl_history ("entries are made at the time the capture process reads the DDL
    transaction in the log"): in agent mode the row appears only after a scan; ddl_lsn is the DDL's commit LSN.
    A DDL-only transaction has no change rows, so its lsn_time_mapping row is an idle marker (tran_id 0x00,
    skipped by map_time_to_lsn) that brings fn_cdc_get_max_lsn() up to the DDL, as SQL Server's next idle scan
    would."""
    set_capture_mode(emulated_source_url, "agent")
    conn.run("ALTER TABLE dbo.t ADD COLUMN note text")
    assert conn.run("SELECT count(*) FROM cdc.ddl_history") == [[0]]
    assert scan(emulated_source_url) == 1
    ((ddl_lsn,),) = conn.run("SELECT ddl_lsn FROM cdc.ddl_history")
    assert conn.run("SELECT sys.fn_cdc_get_max_lsn()") == [[ddl_lsn]]
    assert conn.run("SELECT tran_id FROM cdc.lsn_time_mapping WHERE start_lsn = :l", l=ddl_lsn) == [[b"\x00"]]
    assert conn.run("SELECT sys.fn_cdc_map_time_to_lsn('largest less than or equal', now()::timestamp)") == [[None]]


def test_ddl_and_changes_in_one_transaction_share_its_commit_lsn(conn: pg8000.native.Connection) -> None:
    """§1.4 (ddl_lsn = the commit LSN of the DDL) + §3.2: a transaction that changes rows and alters the table
    has one commit LSN, for its change rows, its ddl_history row and its (real) lsn_time_mapping row."""
    conn.run("BEGIN")
    conn.run("INSERT INTO dbo.t VALUES (1, 1)")
    conn.run("ALTER TABLE dbo.t ADD COLUMN note text")
    conn.run("INSERT INTO dbo.t VALUES (2, 2, 'n')")
    conn.run("COMMIT")
    ((ddl_lsn,),) = conn.run("SELECT ddl_lsn FROM cdc.ddl_history")
    assert _lsns(conn, "dbo_t") == {1: ddl_lsn, 2: ddl_lsn}
    ((tran_id,),) = conn.run("SELECT tran_id FROM cdc.lsn_time_mapping WHERE start_lsn = :l", l=ddl_lsn)
    assert tran_id != b"\x00"


def test_an_open_ddl_transaction_does_not_hold_up_other_commits(
    conn: pg8000.native.Connection, emulated_source_url: str
) -> None:
    """Commit LSNs are allocated at commit only: a transaction that altered a captured table and is still open
    does not stop other transactions on other tables from committing and being captured."""
    conn.run("CREATE TABLE dbo.other (id int PRIMARY KEY)")
    enable_table(conn, "dbo", "other")
    conn.run("BEGIN")
    conn.run("ALTER TABLE dbo.t ADD COLUMN note text")
    writer = connect(emulated_source_url)
    try:
        writer.run("SET statement_timeout = '5s'")
        writer.run("INSERT INTO dbo.other VALUES (1)")
        assert writer.run('SELECT id FROM cdc."dbo_other_CT"') == [[1]]
    finally:
        writer.close()
        conn.run("COMMIT")
    assert conn.run("SELECT count(*) FROM cdc.ddl_history") == [[1]]


def test_enable_waits_for_an_open_writer_whose_commit_stays_below_the_new_start_lsn(
    conn: pg8000.native.Connection, emulated_source_url: str
) -> None:
    """§4 (readers use new.start_lsn as the old instance's stop): a transaction that wrote to the table before
    a second instance was enabled and commits while the enable runs must not land above the new start_lsn
    (its rows are only in the old instance). Like SQL Server's schema lock, the enable waits for it (no
    deadlock), and later writers wait for the enable."""
    conn.run("BEGIN")
    conn.run("INSERT INTO dbo.t VALUES (1, 1)")
    errors: list[BaseException] = []

    def enable() -> None:
        try:
            enable_table(emulated_source_url, "dbo", "t", capture_instance="x2")
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=enable)
    worker.start()
    probe = connect(emulated_source_url)  # pg_stat_activity is a snapshot inside conn's open transaction
    try:
        wait_for(
            lambda: probe.run(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%sp_cdc_enable%'"
            )[0][0],
            timeout=10,
            what="the enable to wait for the open writer",
        )
    finally:
        probe.close()
    conn.run("COMMIT")
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert errors == []
    conn.run("INSERT INTO dbo.t VALUES (2, 2)")
    ((start,),) = conn.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'x2'")
    old = _lsns(conn, "dbo_t")
    assert old[1] < start <= old[2]
    assert _lsns(conn, "x2") == {2: old[2]}


def test_agent_mode_start_lsn_is_set_by_the_scan_that_passes_the_enable(
    conn: pg8000.native.Connection, emulated_source_url: str
) -> None:
    """MS about-CDC "validity interval of the capture instance" + §4: in agent mode the new instance's
    start_lsn stays NULL until capture has captured every transaction committed before the enable (they were
    pending at enable time and are captured only by the old instance); then it lies above all of them and at or
    below the first transaction committed after the enable. The cleanup job does not set a NULL start_lsn (it
    raises only start LSNs below its low water mark)."""
    conn.run("INSERT INTO dbo.t VALUES (0, 0)")
    set_capture_mode(emulated_source_url, "agent")
    conn.run("INSERT INTO dbo.t VALUES (1, 1)")
    enable_table(conn, "dbo", "t", capture_instance="x2")
    conn.run("INSERT INTO dbo.t VALUES (2, 2)")
    conn.run("CALL sys.sp_MScdc_cleanup_job()")
    assert conn.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'x2'") == [[None]]
    assert scan(emulated_source_url, maxtrans=1) == 1  # the transaction committed before the enable
    ((start,),) = conn.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'x2'")
    assert start is not None
    assert conn.run("SELECT sys.fn_cdc_get_max_lsn() < :s", s=start) == [[True]]
    scan(emulated_source_url)
    ((start,),) = conn.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'x2'")
    old = _lsns(conn, "dbo_t")
    assert old[1] < start <= old[2]
    assert _lsns(conn, "x2") == {2: old[2]}


def test_only_column_changes_are_ddl_history(conn: pg8000.native.Connection) -> None:
    """MS sp_cdc_get_ddl_history: ddl_history holds DDL "that change the source table column structure".
    Constraints, indexes, defaults and a table rename change no column and write no row (SQL Server's exact
    set is UNCONFIRMED); a NULL <-> NOT NULL change does (Debezium §4 treats it as a column change). A column
    the change table stores differently (rowversion -> binary(8)) is not mistaken for a type change."""
    conn.run("CREATE TABLE dbo.rv (id int PRIMARY KEY, q int, stamp sys.rowversion)")
    enable_table(conn, "dbo", "rv")
    conn.run("ALTER TABLE dbo.rv ADD CONSTRAINT q_positive CHECK (q > 0)")
    conn.run("CREATE INDEX rv_q ON dbo.rv (q)")
    conn.run("ALTER TABLE dbo.rv ALTER COLUMN q SET DEFAULT 1")
    conn.run("ALTER TABLE dbo.rv RENAME TO rv2")
    assert conn.run("SELECT count(*) FROM cdc.ddl_history") == [[0]]
    conn.run("ALTER TABLE dbo.rv2 ADD COLUMN note text")
    conn.run("ALTER TABLE dbo.rv2 ALTER COLUMN q SET NOT NULL")
    assert conn.run("SELECT required_column_update FROM cdc.ddl_history ORDER BY ddl_lsn") == [[False], [False]]
    assert conn.run(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'cdc' AND table_name = 'dbo_rv_CT' "
        "AND column_name = 'stamp'"
    ) == [["bytea"]]


def test_dropping_a_table_with_pending_changes_in_agent_mode(
    conn: pg8000.native.Connection, emulated_source_url: str
) -> None:
    """MS enable-and-disable-CDC: a dropped table's capture metadata is removed. Changes committed before the
    drop but not yet captured go with it; the next scan still publishes the other tables' transactions."""
    conn.run("CREATE TABLE dbo.other (id int PRIMARY KEY)")
    enable_table(conn, "dbo", "other")
    set_capture_mode(emulated_source_url, "agent")
    conn.run("INSERT INTO dbo.t VALUES (1, 1)")
    conn.run("DROP TABLE dbo.t")
    conn.run("INSERT INTO dbo.other VALUES (1)")
    assert scan(emulated_source_url) == 2
    assert conn.run("SELECT capture_instance FROM cdc.change_tables") == [["dbo_other"]]
    assert conn.run('SELECT id FROM cdc."dbo_other_CT"') == [[1]]


def test_no_generated_objects_outlive_their_instance(conn: pg8000.native.Connection) -> None:
    """Disabling an instance or dropping its table leaves none of its generated functions, types or pending
    tables behind (a re-enable under the same name starts clean)."""

    def leftovers() -> list[list[object]]:
        return conn.run(
            "SELECT p.proname::text FROM pg_proc p WHERE p.proname LIKE 'cdc\\_' || md5('dbo_t') || '%' UNION ALL "
            "SELECT t.typname::text FROM pg_type t WHERE t.typname IN ('dbo_t_row', 'dbo_t_net') UNION ALL "
            "SELECT c.relname::text FROM pg_class c WHERE c.relname IN ('dbo_t_pending', 'dbo_t_CT')"
        )

    assert len(leftovers()) > 0
    conn.run("CALL sys.sp_cdc_disable_table(source_schema => 'dbo', source_name => 't', capture_instance => 'all')")
    assert leftovers() == []
    enable_table(conn, "dbo", "t")
    conn.run("DROP TABLE dbo.t")
    assert leftovers() == []


HOSTILE = "x$b$'\"; DROP TABLE dbo.victim; --"


@pytest.mark.parametrize("check_bodies", ["on", "off"])
def test_hostile_names_never_reach_generated_code(emulated_source_url: str, check_bodies: str) -> None:
    """Issue 15 point 4: schema, table, column and capture-instance names with ``$b$``, quotes, a semicolon
    and a comment marker are quoted, never spliced into dollar-quoted bodies: enabling, capturing, both
    table-valued functions and a regenerating DDL work (check_function_bodies on and off), and no statement
    hidden in a name runs."""
    conn = connect(emulated_source_url)
    try:
        conn.run(f"SET check_function_bodies = {check_bodies}")
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.victim (id int)")
        conn.run(f'CREATE SCHEMA "{HOSTILE.replace(chr(34), chr(34) * 2)}"')
        name = HOSTILE.replace('"', '""')
        conn.run(f'CREATE TABLE "{name}"."{name}" (id int PRIMARY KEY, "{name}" text, "{name}2" sys.nvarchar)')
        ci = "ci$b$'\";--"
        enable_table(conn, HOSTILE, HOSTILE, capture_instance=ci, supports_net_changes=True)
        conn.run(f"INSERT INTO \"{name}\".\"{name}\" VALUES (1, 'a', 'b')")
        conn.run(f'UPDATE "{name}"."{name}" SET "{name}" = \'c\'')
        conn.run(f'ALTER TABLE "{name}"."{name}" ADD COLUMN "{name}3" int')
        conn.run(f'DELETE FROM "{name}"."{name}"')
        fn = f"cdc.{_ident('fn_cdc_get_all_changes_' + ci)}"
        rows = conn.run(
            f'SELECT "__$operation", id, "{name}" FROM {fn}(sys.fn_cdc_get_min_lsn(:ci), sys.fn_cdc_get_max_lsn(), '
            "'all update old')",
            ci=ci,
        )
        assert sorted(tuple(r) for r in rows) == [(1, 1, "c"), (2, 1, "a"), (3, 1, "a"), (4, 1, "c")]
        net = f"cdc.{_ident('fn_cdc_get_net_changes_' + ci)}"
        assert conn.run(
            f"SELECT count(*) FROM {net}(sys.fn_cdc_get_min_lsn(:ci), sys.fn_cdc_get_max_lsn(), 'all')", ci=ci
        ) == [[0]]
        assert conn.run("SELECT to_regclass('dbo.victim') IS NOT NULL") == [[True]]
    finally:
        conn.close()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_default_constraints_describe_column_defaults(conn: pg8000.native.Connection) -> None:
    """What a schema-evolution reader reads for an added column's default: sys.default_constraints
    (parent_object_id, parent_column_id, definition in SQL Server's parenthesised form for constants) and
    sys.columns.default_object_id (0 without a default)."""
    conn.run(
        "ALTER TABLE dbo.t ADD COLUMN a int DEFAULT 0, ADD COLUMN b varchar(5) DEFAULT 'x''y', "
        "ADD COLUMN c numeric(5,2) DEFAULT -1.5, ADD COLUMN d boolean DEFAULT true, "
        "ADD COLUMN e timestamp DEFAULT now(), ADD COLUMN f int, ADD COLUMN g uuid DEFAULT gen_random_uuid(), "
        "ADD COLUMN h timestamp DEFAULT (now() AT TIME ZONE 'utc'), ADD COLUMN i timestamptz DEFAULT now()"
    )
    rows = conn.run(
        "SELECT c.name, dc.definition, c.default_object_id = dc.object_id FROM sys.columns c "
        "JOIN sys.tables t ON t.object_id = c.object_id AND t.name = 't' "
        "LEFT JOIN sys.default_constraints dc ON dc.parent_object_id = c.object_id "
        "AND dc.parent_column_id = c.column_id WHERE c.column_id > 2 ORDER BY c.column_id"
    )
    assert [tuple(r) for r in rows] == [
        ("a", "((0))", True),
        ("b", "('x''y')", True),
        ("c", "((-1.5))", True),
        ("d", "((1))", True),
        ("e", "(getdate())", True),
        ("f", None, None),
        ("g", "(newid())", True),  # SQL Server's spelling of the functions with a PostgreSQL equivalent
        ("h", "(getutcdate())", True),
        ("i", "(getdate())", True),  # now() is also sysdatetimeoffset(): getdate() is the one SQL Server shows
    ]
    assert conn.run(
        "SELECT default_object_id FROM sys.columns c JOIN sys.tables t USING (object_id) "
        "WHERE t.name = 't' AND c.name = 'f'"
    ) == [[0]]


def test_a_type_change_whose_cast_needs_using_alters_the_change_table_too(conn: pg8000.native.Connection) -> None:
    """§4 (the change-table column is altered so that no data is lost): a type change PostgreSQL can only do with
    an explicit ``USING`` cast (varchar -> int) goes through, converts the change table's existing values the same
    way in every instance that captures the column, and updates ``captured_columns.column_type``; later changes
    carry the new type."""
    conn.run("ALTER TABLE dbo.t ADD COLUMN s varchar(10)")
    conn.run("INSERT INTO dbo.t VALUES (1, 1, '5')")
    enable_table(conn, "dbo", "t", capture_instance="dbo_t_v2")
    conn.run("INSERT INTO dbo.t VALUES (2, 2, '6')")
    conn.run("ALTER TABLE dbo.t ALTER COLUMN s TYPE int USING s::int")
    conn.run("INSERT INTO dbo.t VALUES (3, 3, 7)")
    assert conn.run('SELECT id, s FROM cdc."dbo_t_v2_CT" ORDER BY id') == [[2, 6], [3, 7]]
    conn.run("ALTER TABLE dbo.t ALTER COLUMN v TYPE varchar(5) USING v::varchar")
    conn.run("ALTER TABLE dbo.t ALTER COLUMN v TYPE bigint USING v::bigint")
    conn.run("INSERT INTO dbo.t VALUES (4, 40, 8)")
    for ci in ("dbo_t", "dbo_t_v2"):
        assert conn.run(f'SELECT id, v FROM cdc."{ci}_CT" WHERE id >= 2 ORDER BY id') == [[2, 2], [3, 3], [4, 40]]
    assert conn.run(
        "SELECT cc.column_type FROM cdc.captured_columns cc JOIN cdc.change_tables ct ON ct.object_id = cc.object_id "
        "WHERE ct.capture_instance = 'dbo_t_v2' AND cc.column_name = 's'"
    ) == [["int"]]
    required = conn.run(
        "SELECT required_column_update FROM cdc.ddl_history h JOIN cdc.change_tables ct ON ct.object_id = h.object_id "
        "WHERE ct.capture_instance = 'dbo_t_v2'"
    )
    assert required == [[True]] * 3  # the three type changes, each with required_column_update = 1
