"""Writes to the target by someone else (issue 17 point 1): the SQL that finds them, and the rate-limited log."""

from __future__ import annotations

from typing import Any

import structlog

from mssql2pg.model import TARGET_CONFLICT_KINDS, CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.sink import TableOptions, build_target_table
from mssql2pg.sink import statements as sql
from mssql2pg.sink.conflicts import MEANING, ConflictLog, TargetConflict, kind_of
from mssql2pg.sink.schema import TargetTable

ORDERS = TableId("dbo", "Orders")


def table(mode: str = "hard") -> TargetTable:
    ci = CaptureInstance(
        "dbo_Orders",
        ORDERS,
        Lsn.ZERO,
        (SourceColumn("Id", 1, "int", nullable=False), SourceColumn("Region", 2, "int", nullable=False),
         SourceColumn("V", 3, "nvarchar", max_length=10)),
        ("Id", "Region"),
    )  # fmt: skip
    return build_target_table(ci, TableOptions(delete_mode=mode))  # type: ignore[arg-type]


def test_the_codes_follow_the_kinds() -> None:
    assert [kind_of(code) for code in (sql.UPDATE_MISSING, sql.DELETE_MISSING, sql.INSERT_EXISTS, sql.FOREIGN_LSN)] == [
        *TARGET_CONFLICT_KINDS
    ]
    assert set(MEANING) == set(TARGET_CONFLICT_KINDS)


def test_without_detection_the_apply_statement_is_unchanged() -> None:
    text = sql.apply_staged(table(), 0)
    assert "seen" not in text
    assert "last_value" not in text
    assert text.endswith('(SELECT count(*) FROM gone), (SELECT count(*) FROM last WHERE "_cdc_operation" = 1)')


def test_detection_judges_each_keys_first_change_in_the_same_statement() -> None:
    text = sql.apply_staged(table(), 3, detect=True)
    # the window that finds the first change sorts exactly like the DISTINCT ON (one sort for both)
    assert 'PARTITION BY "id", "region" ORDER BY "_cdc_seq" DESC' in text
    assert 'DISTINCT ON ("id", "region")' in text
    assert 'ORDER BY "id", "region", "_cdc_seq" DESC' in text
    assert 'last_value("_cdc_operation") OVER w AS "_cdc_first_op"' in text
    assert 'last_value("_cdc_lsn") OVER w AS "_cdc_first_lsn"' in text
    # the target row is looked up by key in a scalar subquery (an index probe per key, never a scan)
    assert '(SELECT CASE WHEN t."_cdc_lsn" IS NULL OR t."_cdc_lsn" > "l"."_cdc_first_lsn" THEN 4' in text
    assert 'WHERE t."id" = "l"."id" AND t."region" = "l"."region")' in text
    # the last column: conflicts as JSON, only those found
    assert text.endswith("(SELECT json_agg(json_build_array(k, key)) FROM seen WHERE k > 0)")
    # the LSN guard is as before: source-wins applies as today
    assert (
        'WHERE t."_cdc_lsn" <= EXCLUDED."_cdc_lsn" RETURNING t."id", t."region", (t.xmax = 0) AS "_cdc_fresh")' in text
    )
    # hard mode: only suspects are probed (what the upsert and the delete say), after they ran
    assert "seen AS MATERIALIZED (SELECT" in text
    assert text.index("written AS (") < text.index("seen AS MATERIALIZED")
    assert 'RETURNING t."id", t."region")' in text  # the delete returns the keys it deleted
    assert (
        'WHERE CASE WHEN l."_cdc_operation" = 1 THEN g."id" IS NULL OR l."_cdc_first_op" = 2 '
        'ELSE w."id" IS NULL OR w."_cdc_fresh" <> (l."_cdc_first_op" = 2) END)'
    ) in text


def test_soft_mode_probes_every_key() -> None:
    text = sql.apply_staged(table("soft"), 0, detect=True)
    assert "LEFT JOIN written" not in text
    assert "RETURNING 1),\nseen AS MATERIALIZED (SELECT coalesce((SELECT" in text
    assert text.endswith("0, 0, (SELECT json_agg(json_build_array(k, key)) FROM seen WHERE k > 0)")


def test_unique_keys_take_the_change_itself_as_the_first() -> None:
    text = sql.apply_staged(table(), 0, unique_keys=True, detect=True)
    assert "DISTINCT ON" not in text
    assert '"_cdc_operation" AS "_cdc_first_op", "_cdc_lsn" AS "_cdc_first_lsn"' in text


def test_a_soft_deleted_row_counts_as_missing_only_in_soft_mode() -> None:
    assert '"_cdc_deleted"' not in sql.conflict_kind(table("hard"), "l", "op", "lsn")
    soft = sql.conflict_kind(table("soft"), "l", "op", "lsn")
    assert 'WHEN t."_cdc_deleted" THEN CASE "l"."op" WHEN 2 THEN 0 WHEN 1 THEN 2 ELSE 1 END' in soft


def test_an_insert_over_an_older_live_row_is_insert_exists_and_a_missing_key_depends_on_the_operation() -> None:
    text = sql.conflict_kind(table(), "s", "_cdc_operation", "_cdc_lsn")
    assert 'WHEN "s"."_cdc_operation" = 2 AND t."_cdc_lsn" < "s"."_cdc_lsn" THEN 3 ELSE 0 END' in text
    assert text.endswith('CASE "s"."_cdc_operation" WHEN 2 THEN 0 WHEN 1 THEN 2 ELSE 1 END)')


def test_set_aside_removes_the_leading_conflicts_of_each_key_from_staging() -> None:
    text = sql.set_aside_conflicts(table(), 2)
    assert text.startswith('DELETE FROM "mssql2pg_stage_2" AS d USING')
    assert 'bool_and(x.k > 0) OVER (PARTITION BY "id", "region" ORDER BY "_cdc_seq")' in text
    assert 'RETURNING d."_cdc_seq", c.k, json_build_array(d."id", d."region")' in text


def test_bulk_inserts_with_detection_drive_the_update_by_the_keys_found() -> None:
    plain = sql.apply_staged_inserts(table(), 1)
    found = sql.apply_staged_inserts(table(), 1, detect=True)
    assert plain[0] == found[0]
    assert plain[2] == found[2]
    assert plain[1].startswith("UPDATE")
    assert found[1].startswith('WITH seen AS (SELECT s."_cdc_seq", s."id", s."region", CASE WHEN')
    assert 'FROM seen AS e JOIN "mssql2pg_stage_1" AS s ON s."_cdc_seq" = e."_cdc_seq"' in found[1]


def test_the_guard_is_a_statement_trigger_and_quotes_the_table() -> None:
    t = build_target_table(
        CaptureInstance("x", TableId("Sales", 'Or"ders'), Lsn.ZERO, (SourceColumn("Id", 1, "int"),), ("Id",)),
        TableOptions(naming="preserve"),
    )
    text = sql.protect_table(t)
    assert text == (
        'CREATE TRIGGER "mssql2pg_protect" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "Sales"."Or""ders" '
        'FOR EACH STATEMENT EXECUTE FUNCTION "mssql2pg"."refuse_foreign_write"()'
    )
    assert sql.unprotect_table("Sales", 'Or"ders') == 'DROP TRIGGER IF EXISTS "mssql2pg_protect" ON "Sales"."Or""ders"'
    assert "current_setting('mssql2pg.writer', true)" in sql.CREATE_PROTECT_FUNCTION


# --- the rate-limited log ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def conflict(table: str = "dbo.A", key: int = 1) -> TargetConflict:
    return TargetConflict(TableId.parse(table), "update_missing", {"id": key})


def lines(logs: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    return [(e["event"], e["table"], e.get("key", e.get("suppressed"))) for e in logs]


def test_the_first_n_per_table_and_window_are_logged_then_one_summary() -> None:
    clock = Clock()
    limiter = ConflictLog(limit=2, window=60.0, clock=clock)
    with structlog.testing.capture_logs() as logs:
        for key in range(5):
            limiter.report(conflict(key=key))
        limiter.report(conflict("dbo.B", 9))  # another table has its own allowance
        clock.now = 30.0
        limiter.flush()  # the window has not ended: nothing yet
        assert len(logs) == 3
        clock.now = 60.0
        limiter.flush()
        limiter.flush()  # said once
    event = "target conflict: the target table was written by someone else"
    assert lines(logs) == [
        (event, "dbo.A", {"id": 0}),
        (event, "dbo.A", {"id": 1}),
        (event, "dbo.B", {"id": 9}),
        ("target conflicts not logged one by one", "dbo.A", 3),
    ]
    assert logs[0]["kind"] == "update_missing"
    assert logs[0]["log_level"] == "warning"
    assert logs[-1]["logged"] == 2


def test_a_new_window_logs_again_and_first_says_what_the_last_one_suppressed() -> None:
    clock = Clock()
    limiter = ConflictLog(limit=1, window=60.0, clock=clock)
    with structlog.testing.capture_logs() as logs:
        limiter.report(conflict(key=1))
        limiter.report(conflict(key=2))
        clock.now = 61.0
        limiter.report(conflict(key=3))
    assert lines(logs) == [
        ("target conflict: the target table was written by someone else", "dbo.A", {"id": 1}),
        ("target conflicts not logged one by one", "dbo.A", 1),
        ("target conflict: the target table was written by someone else", "dbo.A", {"id": 3}),
    ]


def test_nothing_suppressed_means_no_summary() -> None:
    clock = Clock()
    limiter = ConflictLog(limit=5, clock=clock)
    with structlog.testing.capture_logs() as logs:
        limiter.report(conflict())
        clock.now = 120.0
        limiter.flush()
    assert len(logs) == 1


def test_every_kind_has_one_meaning_and_the_sql_codes_follow_the_kinds_order() -> None:
    assert set(MEANING) == set(TARGET_CONFLICT_KINDS)
    codes = (sql.UPDATE_MISSING, sql.DELETE_MISSING, sql.INSERT_EXISTS, sql.FOREIGN_LSN)
    assert [kind_of(code) for code in codes] == list(TARGET_CONFLICT_KINDS)
    assert [kind_of(code) for code in codes] == ["update_missing", "delete_missing", "insert_exists", "foreign_lsn"]


def test_closing_says_what_an_unfinished_window_suppressed() -> None:
    """A process that stops within the window must not take the summary with it."""
    clock = Clock()
    limiter = ConflictLog(limit=1, window=60.0, clock=clock)
    with structlog.testing.capture_logs() as logs:
        limiter.report(conflict(key=1))
        limiter.report(conflict(key=2))
        limiter.report(conflict(key=3))
        clock.now = 5.0
        limiter.close()
        limiter.close()  # said once
    assert lines(logs) == [
        ("target conflict: the target table was written by someone else", "dbo.A", {"id": 1}),
        ("target conflicts not logged one by one", "dbo.A", 2),
    ]
