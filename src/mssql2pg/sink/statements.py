"""Every SQL text the sink sends to the replicated tables, in one place (the control schema's is in
:mod:`mssql2pg.control.statements`).

Identifiers reach SQL only through :func:`quote_ident` / :func:`qualified`; values only as bound parameters
(``:name`` placeholders of pg8000.native) or COPY data. Functions here build text from a
:class:`~mssql2pg.sink.schema.TargetTable`; nothing here executes anything.
"""

from __future__ import annotations

from mssql2pg.identifiers import qualified, quote_ident
from mssql2pg.sink.schema import TargetTable

__all__ = ["qualified", "quote_ident"]

# --- target tables --------------------------------------------------------------------------------------------


def create_schema(schema: str) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"


def create_target_table(table: TargetTable) -> str:
    lines = [
        f"{quote_ident(c.name)} {c.pg_type}{'' if c.nullable or c.name in table.key else ' NOT NULL'}"
        for c in table.columns
    ]
    lines += [
        f"{quote_ident(name)} {definition}"  # sql-lint: definition is one of MetadataColumns' fixed type strings
        for name, definition in table.meta.definitions()
    ]
    lines.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in table.key)})")
    body = ",\n  ".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {table.qualified_name} (\n  {body}\n)"


SELECT_TABLE_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :name AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

SELECT_PRIMARY_KEY = """
SELECT a.attname
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = :schema AND c.relname = :name AND i.indisprimary
ORDER BY k.ord
"""


# --- staging --------------------------------------------------------------------------------------------------


def staging_name(index: int) -> str:
    """Staging tables are session-local temp tables with generated (never user-derived) names."""
    return quote_ident(f"mssql2pg_stage_{index}")


def staging_columns(table: TargetTable) -> list[str]:
    """COPY column order of a staging table: arrival sequence, operation, commit LSN, commit time, stale flag,
    data. The stale flag is decided per source transaction when it is encoded (see ``ApplySettings.stale_after``)."""
    m = table.meta
    return [m.prefix + "seq", m.operation, m.lsn, m.commit_time, m.stale, *table.column_names]


def staging_middle(operation: int, commit_lsn_raw: bytes | None, commit_time_text: str) -> tuple[str, str]:
    """The COPY text of a staging line between arrival sequence and data, as (not stale, stale) variants:
    ``\t<op>\t<lsn>\t<time>\t<stale>\t`` (column order of :func:`staging_columns`). ``commit_time_text`` is
    already COPY text (``\\N`` for NULL)."""
    head = f"\t{operation}\t\\\\x{(commit_lsn_raw or b'').hex()}\t{commit_time_text}\t"
    return head + "f\t", head + "t\t"


def create_staging(table: TargetTable, index: int) -> str:
    types = ["bigint", "smallint", "bytea", "timestamp", "boolean"] + [c.pg_type for c in table.columns]
    cols = ", ".join(
        f"{quote_ident(n)} {t}"  # sql-lint: t is one of the fixed type strings above
        for n, t in zip(staging_columns(table), types, strict=True)
    )
    return f"CREATE TEMP TABLE IF NOT EXISTS {staging_name(index)} ({cols}) ON COMMIT DELETE ROWS"


def drop_staging(index: int) -> str:
    return f"DROP TABLE IF EXISTS {staging_name(index)}"


def copy_into_staging(table: TargetTable, index: int) -> str:
    cols = ", ".join(quote_ident(n) for n in staging_columns(table))
    return f"COPY {staging_name(index)} ({cols}) FROM STDIN"


def apply_staged(table: TargetTable, index: int, *, unique_keys: bool = False) -> str:
    """One set-based statement: the last change per key wins (arrival order = commit order, then row order).

    Hard delete mode: keys whose last change is a delete are deleted, the others upserted. Soft mode: every
    key is upserted and ``<prefix>deleted`` says whether its last change was a delete; columns SQL Server
    leaves NULL in delete rows (text/ntext/image) keep their previous value then. An upsert never overwrites a
    row that already carries a later commit LSN.

    The statement returns one row for the write validation: (upserts written, upserts expected, deletes done,
    deletes expected). Fewer upserts than expected happen legitimately only when the target already holds a later
    commit LSN, fewer deletes only when the key is absent; anything else means the target swallowed a write.

    ``unique_keys``: the caller knows every staged row is an insert. A consistent source cannot insert one key
    twice without a delete in between, so the keys are unique and the sort for "last per key" is skipped (if
    the source were inconsistent, PostgreSQL refuses the statement loudly: "cannot affect row a second time").
    """
    m = table.meta
    target = table.qualified_name
    key = ", ".join(quote_ident(k) for k in table.key)
    seq, op, lsn, ctime, stale = (quote_ident(n) for n in staging_columns(table)[:5])
    data = [quote_ident(c) for c in table.column_names]
    last = (
        f"SELECT * FROM {staging_name(index)}"
        if unique_keys
        else f"SELECT DISTINCT ON ({key}) * FROM {staging_name(index)} ORDER BY {key}, {seq} DESC"
    )
    deleted = quote_ident(m.deleted)
    insert_cols = [*data, lsn, op, ctime, quote_ident(m.applied_at), deleted, quote_ident(m.stale)]
    keep = {quote_ident(c) for c in table.keep_on_delete()}
    if table.delete_mode == "soft":
        select_deleted, where, prelude = f"{op} = 1", "", ""
        deletes = "0, 0"
        sets = [
            f"{c} = CASE WHEN EXCLUDED.{deleted} THEN t.{c} ELSE EXCLUDED.{c} END"
            if c in keep
            else f"{c} = EXCLUDED.{c}"
            for c in data
        ]
    else:
        select_deleted, where = "false", f" WHERE {op} <> 1"
        key_match = " AND ".join(f"t.{quote_ident(k)} = l.{quote_ident(k)}" for k in table.key)
        prelude = (
            f", gone AS (DELETE FROM {target} AS t USING last AS l\n"
            f"WHERE l.{op} = 1 AND {key_match} AND t.{lsn} <= l.{lsn} RETURNING 1)"
        )
        deletes = f"(SELECT count(*) FROM gone), (SELECT count(*) FROM last WHERE {op} = 1)"
        sets = [f"{c} = EXCLUDED.{c}" for c in data]
    sets += [f"{c} = EXCLUDED.{c}" for c in (lsn, op, ctime, quote_ident(m.applied_at), deleted, quote_ident(m.stale))]
    return (
        f"WITH last AS ({last}){prelude},\n"
        f"written AS (INSERT INTO {target} AS t ({', '.join(insert_cols)})\n"
        f"SELECT {', '.join(data)}, {lsn}, {op}, {ctime}, now(), {select_deleted}, {stale} FROM last{where}\n"
        f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(sets)}\n"
        f"WHERE t.{lsn} <= EXCLUDED.{lsn} RETURNING 1)\n"
        f"SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM last{where}), {deletes}"
    )


# --- apply variants and resync --------------------------------------------------------------------------------


def restore_kept_columns(table: TargetTable, index: int) -> str | None:
    """Soft mode: give text/ntext/image columns of rows soft-deleted in this batch the value of the key's last
    non-delete change in the batch (SQL Server writes NULL for them in the delete row).

    :func:`apply_staged` already keeps the target's previous value; this covers a key inserted or updated and
    then deleted inside the same batch, whose previous value only exists in staging. None when not needed.
    """
    keep = table.keep_on_delete()
    if table.delete_mode != "soft" or not keep:
        return None
    stage = staging_name(index)
    key = ", ".join(quote_ident(k) for k in table.key)
    seq, op, lsn, _ctime, _stale = (quote_ident(n) for n in staging_columns(table)[:5])
    sets = ", ".join(f"{quote_ident(c)} = p.{quote_ident(c)}" for c in keep)
    join = " AND ".join(f"p.{quote_ident(k)} = l.{quote_ident(k)}" for k in table.key)
    match = " AND ".join(f"t.{quote_ident(k)} = l.{quote_ident(k)}" for k in table.key)
    return (
        f"UPDATE {table.qualified_name} AS t SET {sets}\n"
        f"FROM (SELECT DISTINCT ON ({key}) * FROM {stage} ORDER BY {key}, {seq} DESC) AS l\n"
        f"JOIN (SELECT DISTINCT ON ({key}) * FROM {stage} WHERE {op} <> 1 ORDER BY {key}, {seq} DESC) AS p ON {join}\n"
        f"WHERE l.{op} = 1 AND {match} AND t.{lsn} = l.{lsn}"
    )


def apply_staged_inserts(table: TargetTable, index: int) -> list[str]:
    """The fast path of :func:`apply_staged` when every staged row is an insert (so keys are unique).

    A plain update of the keys that already exist (only by a newer commit LSN: a re-delivery after a resync)
    followed by an anti-join insert of the rest is much cheaper than ``INSERT ... ON CONFLICT`` for large
    batches. A single writer per pipeline is assumed (the checkpoint refuses to move backwards otherwise).
    """
    m = table.meta
    target = table.qualified_name
    stage = staging_name(index)
    _seq, op, lsn, ctime, stale = (quote_ident(n) for n in staging_columns(table)[:5])
    data = [quote_ident(c) for c in table.column_names]
    key_match = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.key)
    meta = [lsn, op, ctime, quote_ident(m.applied_at), quote_ident(m.deleted), stale]
    values = [f"s.{c}" for c in (*data, lsn, op, ctime)] + ["now()", "false", f"s.{stale}"]
    sets = ", ".join(f"{c} = {v}" for c, v in zip([*data, *meta], values, strict=True))
    return [
        f"ANALYZE {stage}",
        f"UPDATE {target} AS t SET {sets} FROM {stage} AS s WHERE {key_match} AND t.{lsn} <= s.{lsn}",
        f"INSERT INTO {target} ({', '.join([*data, *meta])})\n"
        f"SELECT {', '.join(values)} FROM {stage} AS s\n"
        f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {key_match})",
    ]


def remove_outside_snapshot(table: TargetTable) -> str:
    """After a resync loaded a snapshot taken at ``:lsn``: the rows it did not cover are gone from the source.

    Every row the snapshot wrote carries ``:lsn`` (or a later LSN, written by changes after it), so a row with an
    older commit LSN was not in the snapshot: hard mode deletes it, soft mode flags it deleted as of ``:lsn``.
    """
    m = table.meta
    lsn = quote_ident(m.lsn)
    if table.delete_mode == "soft":
        return (
            f"UPDATE {table.qualified_name} SET {quote_ident(m.deleted)} = true, {quote_ident(m.operation)} = 1, "
            f"{lsn} = :lsn, {quote_ident(m.commit_time)} = :commit_time, {quote_ident(m.applied_at)} = now() "
            f"WHERE {lsn} < :lsn AND NOT {quote_ident(m.deleted)}"
        )
    return f"DELETE FROM {table.qualified_name} WHERE {lsn} < :lsn"


def lock_for_resync(table: TargetTable) -> str:
    """Writers of the table (a running pipeline) wait until the resync commits; readers keep reading the old
    content until then, so nobody sees a half-loaded table."""
    return f"LOCK TABLE {table.qualified_name} IN SHARE ROW EXCLUSIVE MODE"


# --- isolation and write validation ---------------------------------------------------------------------------


def truncate_staging(index: int) -> str:
    return f"TRUNCATE {staging_name(index)}"


def count_unwritten(table: TargetTable, index: int) -> str:
    """How many staged changes did NOT reach the target: the write validation of FR-014.

    For the last change per key: a delete (hard mode) must have left no row with an older or equal commit LSN;
    anything else must have left a row carrying this commit LSN or a later one. Zero after every apply, unless
    something on the target (a trigger returning NULL, a rule, a row-level security policy) swallowed a write.
    """
    key = ", ".join(quote_ident(k) for k in table.key)
    seq, op, lsn = (quote_ident(n) for n in staging_columns(table)[:3])
    match = " AND ".join(f"t.{quote_ident(k)} = l.{quote_ident(k)}" for k in table.key)
    present = f"EXISTS (SELECT 1 FROM {table.qualified_name} AS t WHERE {match} AND t.{lsn} >= l.{lsn})"
    kept = f"EXISTS (SELECT 1 FROM {table.qualified_name} AS t WHERE {match} AND t.{lsn} <= l.{lsn})"
    missing = (
        f"NOT {present}" if table.delete_mode == "soft" else f"CASE WHEN l.{op} = 1 THEN {kept} ELSE NOT {present} END"
    )
    return (
        f"SELECT count(*) FROM (SELECT DISTINCT ON ({key}) * FROM {staging_name(index)} ORDER BY {key}, {seq} DESC)"
        f" AS l WHERE {missing}"
    )


# --- privileges of the target role (``mssql2pg check``) -----------------------------------------------------

DATABASE_PRIVILEGES = """
SELECT current_user, current_database(),
       has_database_privilege(current_database(), 'CREATE'),
       has_database_privilege(current_database(), 'TEMPORARY')
"""
"""Who the target role is, and whether it may create schemas and TEMP (staging) tables in the database."""

SCHEMA_PRIVILEGES = """
SELECT has_schema_privilege(n.oid, 'USAGE'), has_schema_privilege(n.oid, 'CREATE')
FROM pg_catalog.pg_namespace n WHERE n.nspname = :schema
"""
"""USAGE and CREATE on one schema; no row when the schema does not exist."""

TABLE_PRIVILEGES_MISSING = """
SELECT c.relname, p.privilege
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) WITH ORDINALITY AS p(privilege, position)
WHERE n.nspname = :schema AND (CAST(:name AS text) IS NULL OR c.relname = :name) AND c.relkind IN ('r', 'p')
  AND NOT has_table_privilege(c.oid, p.privilege)
ORDER BY c.relname, p.position
"""
"""The privileges the applier needs that the role lacks, per table of ``:schema`` (one table when ``:name`` is
not NULL)."""

TABLES_OF_SCHEMA = """
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')
"""
"""The tables that exist in one schema (a missing one needs CREATE on the schema to be made)."""


# --- the target's clock ---------------------------------------------------------------------------------------

TARGET_CLOCK = "SELECT clock_timestamp()"
"""The target's current time, to measure clock skew (``pipeline/clock.py``). ``clock_timestamp()``, not ``now()``:
``now()`` is the start of the transaction, which may lie before the round trip being measured."""
