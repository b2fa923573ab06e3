"""Every SQL text the sink sends to the replicated tables, in one place (the control schema's is in
:mod:`mssql2pg.control.statements`).

Identifiers reach SQL only through :func:`quote_ident` / :func:`qualified`; values only as bound parameters
(``:name`` placeholders of pg8000.native) or COPY data. Functions here build text from a
:class:`~mssql2pg.sink.schema.TargetTable`; nothing here executes anything.
"""

from __future__ import annotations

from mssql2pg.identifiers import qualified, quote_ident
from mssql2pg.sink.schema import TargetColumn, TargetTable

__all__ = ["qualified", "quote_ident"]

# --- target tables --------------------------------------------------------------------------------------------


SCHEMA_EXISTS = "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :schema"
"""Whether a target schema exists, asked before :func:`create_schema`: PostgreSQL checks CREATE on the database
for ``CREATE SCHEMA IF NOT EXISTS`` before it looks, so a role without that privilege (docs/security.md: it is
needed only while a schema is missing) must not send it for a schema that is there."""


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


def apply_staged(table: TargetTable, index: int, *, unique_keys: bool = False, detect: bool = False) -> str:
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

    ``detect``: the row has a fifth column, the target conflicts (writes by someone else, see
    :data:`~mssql2pg.model.TARGET_CONFLICT_KINDS`) as JSON ``[[code, [key values]], ...]`` (NULL: none), found in
    the same statement (no extra round trip): each key's FIRST change of the batch is judged against the target row
    as it was before the statement (every part of one statement sees the same snapshot), because the statement
    applies the last change per key and an insert followed by an update in one batch is normal. The window that
    finds the first change sorts like the DISTINCT ON (so one sort serves both). The target row is looked up by key
    (a scalar subquery: an index probe, whatever the table's size) only where the write itself says something is
    off, in hard delete mode: the upsert returns whether it inserted (``xmax = 0``) or updated, the delete what it
    deleted, and a key is a suspect when an insert found its key there, an update or delete did not, or nothing
    was written (the LSN guard held). So a batch without conflicts costs two hash joins of the batch, not a probe
    per key. What this misses: a row stamped with an LSN between the first and the last change of its key in one
    batch (its conflict is only found by a later change). In soft mode a soft-deleted row looks like any other to
    the upsert, so every key is probed there.
    """
    m = table.meta
    target = table.qualified_name
    key = ", ".join(quote_ident(k) for k in table.key)
    seq, op, lsn, ctime, stale = (quote_ident(n) for n in staging_columns(table)[:5])
    data = [quote_ident(c) for c in table.column_names]
    first_op, first_lsn = quote_ident(m.prefix + "first_op"), quote_ident(m.prefix + "first_lsn")
    if unique_keys:
        last = f"SELECT * FROM {staging_name(index)}"
        if detect:
            last = f"SELECT *, {op} AS {first_op}, {lsn} AS {first_lsn} FROM {staging_name(index)}"
    elif detect:
        window = f"PARTITION BY {key} ORDER BY {seq} DESC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
        last = (
            f"SELECT DISTINCT ON ({key}) *, last_value({op}) OVER w AS {first_op}, last_value({lsn}) OVER w AS "
            f"{first_lsn} FROM {staging_name(index)} WINDOW w AS ({window}) ORDER BY {key}, {seq} DESC"
        )
    else:
        last = f"SELECT DISTINCT ON ({key}) * FROM {staging_name(index)} ORDER BY {key}, {seq} DESC"
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
        gone_returns = ", ".join(f"t.{quote_ident(k)}" for k in table.key) if detect else "1"
        prelude = (
            f", gone AS (DELETE FROM {target} AS t USING last AS l\n"
            f"WHERE l.{op} = 1 AND {key_match} AND t.{lsn} <= l.{lsn} RETURNING {gone_returns})"
        )
        deletes = f"(SELECT count(*) FROM gone), (SELECT count(*) FROM last WHERE {op} = 1)"
        sets = [f"{c} = EXCLUDED.{c}" for c in data]
    sets += [f"{c} = EXCLUDED.{c}" for c in (lsn, op, ctime, quote_ident(m.applied_at), deleted, quote_ident(m.stale))]
    returns, seen, conflicts = "1", "", ""
    if detect:
        kind = conflict_kind(table, "l", m.prefix + "first_op", m.prefix + "first_lsn")
        keys = ", ".join(f"l.{quote_ident(k)}" for k in table.key)
        suspects = ""
        if table.delete_mode == "hard":
            fresh = quote_ident(m.prefix + "fresh")
            returns = ", ".join([*(f"t.{quote_ident(k)}" for k in table.key), f"(t.xmax = 0) AS {fresh}"])
            on_w = " AND ".join(f"w.{quote_ident(k)} = l.{quote_ident(k)}" for k in table.key)
            on_g = " AND ".join(f"g.{quote_ident(k)} = l.{quote_ident(k)}" for k in table.key)
            k0 = quote_ident(table.key[0])
            suspects = (
                f" LEFT JOIN written AS w ON {on_w} LEFT JOIN gone AS g ON {on_g}\n"
                f"WHERE CASE WHEN l.{op} = 1 THEN g.{k0} IS NULL OR l.{first_op} = 2 "
                f"ELSE w.{k0} IS NULL OR w.{fresh} <> (l.{first_op} = 2) END"
            )
        seen = f",\nseen AS MATERIALIZED (SELECT {kind} AS k, json_build_array({keys}) AS key FROM last AS l{suspects})"
        conflicts = ", (SELECT json_agg(json_build_array(k, key)) FROM seen WHERE k > 0)"
    return (
        f"WITH last AS ({last}){prelude},\n"
        f"written AS (INSERT INTO {target} AS t ({', '.join(insert_cols)})\n"
        f"SELECT {', '.join(data)}, {lsn}, {op}, {ctime}, now(), {select_deleted}, {stale} FROM last{where}\n"
        f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(sets)}\n"
        f"WHERE t.{lsn} <= EXCLUDED.{lsn} RETURNING {returns}){seen}\n"
        f"SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM last{where}), {deletes}{conflicts}"
    )


# --- writes to the target by someone else (issue 17 point 1; docs/operations.md) -------------------------------

UPDATE_MISSING, DELETE_MISSING, INSERT_EXISTS, FOREIGN_LSN = range(1, 5)
"""The SQL codes of :data:`~mssql2pg.model.TARGET_CONFLICT_KINDS` (position + 1; 0: no conflict)."""


def conflict_kind(table: TargetTable, alias: str, operation: str, commit_lsn: str) -> str:
    """The conflict code (0: none) of a change against the target row of its key as it is now.

    ``alias`` names the change's relation (its key columns), ``operation`` and ``commit_lsn`` its columns
    holding the change's operation and commit LSN. The target row is looked up by key in a scalar subquery: one
    index probe per change, never a scan of the target. Legitimate states are not conflicts: an insert over a
    soft-deleted row, a re-delivery whose LSN the target row already carries.
    """
    m = table.meta
    t_lsn, t_deleted = f"t.{quote_ident(m.lsn)}", f"t.{quote_ident(m.deleted)}"
    a = quote_ident(alias)
    op, lsn = f"{a}.{quote_ident(operation)}", f"{a}.{quote_ident(commit_lsn)}"
    match = " AND ".join(f"t.{quote_ident(k)} = {a}.{quote_ident(k)}" for k in table.key)
    missing = f"CASE {op} WHEN 2 THEN 0 WHEN 1 THEN {int(DELETE_MISSING)} ELSE {int(UPDATE_MISSING)} END"
    soft = f"WHEN {t_deleted} THEN {missing} " if table.delete_mode == "soft" else ""
    present = (
        f"CASE WHEN {t_lsn} IS NULL OR {t_lsn} > {lsn} THEN {int(FOREIGN_LSN)} {soft}"  # sql-lint: quoted above
        f"WHEN {op} = 2 AND {t_lsn} < {lsn} THEN {int(INSERT_EXISTS)} ELSE 0 END"
    )
    # sql-lint: present and missing are built above from quoted names and integer codes only
    return f"coalesce((SELECT {present} FROM {table.qualified_name} AS t WHERE {match}), {missing})"


def set_aside_conflicts(table: TargetTable, index: int) -> str:
    """Policy ``dead-letter``: remove from staging the changes that conflict with the target, before the apply.

    A change is set aside when it conflicts with the target row as it is (:func:`conflict_kind`) and so did every
    earlier change of its key in the batch: the target row stays as it is while changes are set aside, so each one
    is judged as if it arrived alone, whatever the batching. E.g. a key deleted in the target: its updates and
    deletes are set aside until the source inserts it again; a key inserted in the target: the source's insert is
    set aside, its later updates apply. Returns (arrival seq, conflict code, key values as JSON) per change.
    """
    m = table.meta
    stage = staging_name(index)
    key = ", ".join(quote_ident(k) for k in table.key)
    seq = quote_ident(staging_columns(table)[0])
    kind = conflict_kind(table, "s", m.operation, m.lsn)
    keys = ", ".join(f"s.{quote_ident(k)}" for k in table.key)
    judged = f"SELECT s.{seq}, {keys}, {kind} AS k FROM {stage} AS s"
    leading = f"bool_and(x.k > 0) OVER (PARTITION BY {key} ORDER BY {seq})"
    return (
        f"DELETE FROM {stage} AS d USING (SELECT * FROM (SELECT x.*, {leading} AS aside FROM ({judged}) AS x) AS y"
        f" WHERE aside) AS c WHERE d.{seq} = c.{seq}\n"
        f"RETURNING d.{seq}, c.k, json_build_array({', '.join(f'd.{quote_ident(k)}' for k in table.key)})"
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


def apply_staged_inserts(table: TargetTable, index: int, *, detect: bool = False) -> list[str]:
    """The fast path of :func:`apply_staged` when every staged row is an insert (so keys are unique).

    A plain update of the keys that already exist (only by a newer commit LSN: a re-delivery after a resync)
    followed by an anti-join insert of the rest is much cheaper than ``INSERT ... ON CONFLICT`` for large
    batches. A single writer per pipeline is assumed (the checkpoint refuses to move backwards otherwise).

    ``detect``: the update becomes a statement that returns (rows updated, target conflicts as in
    :func:`apply_staged`): the keys of the batch that the target already holds are found once (one join of
    staging with the target, as the update did), judged, and the update is driven by them.
    """
    m = table.meta
    target = table.qualified_name
    stage = staging_name(index)
    seq, op, lsn, ctime, stale = (quote_ident(n) for n in staging_columns(table)[:5])
    data = [quote_ident(c) for c in table.column_names]
    key_match = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.key)
    meta = [lsn, op, ctime, quote_ident(m.applied_at), quote_ident(m.deleted), stale]
    values = [f"s.{c}" for c in (*data, lsn, op, ctime)] + ["now()", "false", f"s.{stale}"]
    sets = ", ".join(f"{c} = {v}" for c, v in zip([*data, *meta], values, strict=True))
    update = f"UPDATE {target} AS t SET {sets} FROM {stage} AS s WHERE {key_match} AND t.{lsn} <= s.{lsn}"
    if detect:
        t_lsn, t_deleted = f"t.{lsn}", f"t.{quote_ident(m.deleted)}"
        soft = f"WHEN {t_deleted} THEN 0 " if table.delete_mode == "soft" else ""
        kind = (
            f"CASE WHEN {t_lsn} IS NULL OR {t_lsn} > s.{lsn} THEN {int(FOREIGN_LSN)} {soft}"
            f"WHEN {t_lsn} < s.{lsn} THEN {int(INSERT_EXISTS)} ELSE 0 END"
        )
        keys = ", ".join(f"s.{quote_ident(k)}" for k in table.key)
        seen_match = " AND ".join(f"t.{quote_ident(k)} = e.{quote_ident(k)}" for k in table.key)
        seen_keys = ", ".join(f"e.{quote_ident(k)}" for k in table.key)
        update = (
            f"WITH seen AS (SELECT s.{seq}, {keys}, {kind} AS k FROM {stage} AS s JOIN {target} AS t ON {key_match}),\n"
            f"written AS (UPDATE {target} AS t SET {sets} FROM seen AS e JOIN {stage} AS s ON s.{seq} = e.{seq}\n"
            f"WHERE {seen_match} AND t.{lsn} <= s.{lsn} RETURNING 1)\n"
            f"SELECT (SELECT count(*) FROM written), "
            f"(SELECT json_agg(json_build_array(e.k, json_build_array({seen_keys}))) FROM seen AS e "
            f"WHERE e.k > 0)"
        )
    return [
        f"ANALYZE {stage}",
        update,
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


# --- filling added columns (pipeline/column_fill.py) ----------------------------------------------------------

FILL_TABLE = quote_ident("mssql2pg_fill")
"""The session-local temp table a page of source rows is copied into before it fills the target's columns."""


def create_fill_table(table: TargetTable) -> str:
    """A temp table of ``table``'s data columns (no constraints: a page is copied in as read)."""
    cols = ", ".join(f"{quote_ident(c.name)} {c.pg_type}" for c in table.columns)  # sql-lint: mapped type names
    return f"CREATE TEMP TABLE IF NOT EXISTS {FILL_TABLE} ({cols}) ON COMMIT DELETE ROWS"


def copy_into_fill(table: TargetTable) -> str:
    cols = ", ".join(quote_ident(c.name) for c in table.columns)
    return f"COPY {FILL_TABLE} ({cols}) FROM STDIN"


def fill_columns(table: TargetTable, columns: list[TargetColumn]) -> str:
    """Set ``columns`` of the target rows the stream has not written since ``:start`` (their ``_cdc_lsn`` is
    below it) to the values copied into the fill table; only where a value differs, so a row that already holds
    the source's value is not rewritten. The metadata columns are left alone: this is not a change of the row,
    and conflict detection (``_cdc_lsn``) must not see one. A soft-deleted row is left as it is."""
    m = table.meta
    names = [quote_ident(c.name) for c in columns]
    assignments = ", ".join(f"{n} = f.{n}" for n in names)
    match = " AND ".join(f"t.{quote_ident(k)} = f.{quote_ident(k)}" for k in table.key)
    differs = " OR ".join(f"t.{n} IS DISTINCT FROM f.{n}" for n in names)
    live = f" AND NOT t.{quote_ident(m.deleted)}" if table.delete_mode == "soft" else ""
    return (
        f"UPDATE {table.qualified_name} AS t SET {assignments} FROM {FILL_TABLE} AS f "
        f"WHERE {match} AND t.{quote_ident(m.lsn)} < :start{live} AND ({differs})"
    )


# --- isolation and write validation ---------------------------------------------------------------------------


NO_JIT = "SELECT set_config('jit', 'off', false)"
"""The applier's session: no JIT compilation (see :meth:`mssql2pg.sink.applier.Applier.start`)."""


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


# --- schema evolution (mssql2pg.sink.evolution) ------------------------------------------------------------------


def add_column(table: TargetTable, column: TargetColumn, default: str | None = None) -> str:
    """A column added at the source: nullable, since the rows replicated before may have no value for it.
    ``default``: a constant PostgreSQL literal (see :func:`mssql2pg.sink.evolution.pg_default`) that fills the
    existing rows, as SQL Server fills them for a NOT NULL column added with a default."""
    fill = "" if default is None else f" DEFAULT {default}"  # sql-lint: pg_default: a number or a quoted literal
    add = f"ALTER TABLE {table.qualified_name} ADD COLUMN IF NOT EXISTS {quote_ident(column.name)} {column.pg_type}"
    return add + fill  # sql-lint: fill is the literal above


def set_default(table: TargetTable, column: TargetColumn, default: str) -> str:
    """The source column's default kept on the target column (without filling existing rows)."""
    # sql-lint: pg_default returns only a number or one complete quoted literal (its quotes doubled)
    return f"ALTER TABLE {table.qualified_name} ALTER COLUMN {quote_ident(column.name)} SET DEFAULT {default}"


def drop_not_null(table: TargetTable, column: TargetColumn) -> str:
    return f"ALTER TABLE {table.qualified_name} ALTER COLUMN {quote_ident(column.name)} DROP NOT NULL"


def drop_column(table: TargetTable, column: TargetColumn) -> str:
    """Recommended, never run by mssql2pg: an operator drops a column once nothing needs it."""
    return f"ALTER TABLE {table.qualified_name} DROP COLUMN {quote_ident(column.name)}"


def archive_column(table: TargetTable, column: TargetColumn) -> str:
    """Recommended before :func:`drop_column`: the key and the column's values, in a table of their own."""
    archive = qualified(table.schema, f"{table.name}_{column.name}_archive"[:63])
    keys = ", ".join(quote_ident(k) for k in table.key)
    return (
        f"CREATE TABLE {archive} AS SELECT {keys}, {quote_ident(column.name)} FROM {table.qualified_name} "
        f"WHERE {quote_ident(column.name)} IS NOT NULL"
    )


def alter_column_type(table: TargetTable, column: TargetColumn, *, using: bool = False) -> str:
    """``ALTER COLUMN ... TYPE``; with ``using``, the explicit cast a non-widening change needs (recommended)."""
    name = quote_ident(column.name)
    cast = f" USING {name}::{column.pg_type}" if using else ""
    return f"ALTER TABLE {table.qualified_name} ALTER COLUMN {name} TYPE {column.pg_type}{cast}"


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
CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRIGGER']) WITH ORDINALITY AS p(privilege, position)
WHERE n.nspname = :schema AND (CAST(:name AS text) IS NULL OR c.relname = :name) AND c.relkind IN ('r', 'p')
  AND (p.privilege <> 'TRIGGER' OR CAST(:trigger AS boolean))
  AND NOT has_table_privilege(c.oid, p.privilege)
ORDER BY c.relname, p.position
"""
"""The privileges the applier needs that the role lacks, per table of ``:schema`` (one table when ``:name`` is
not NULL); TRIGGER too when ``:trigger`` (``target.protect`` installs its guard trigger on each table)."""

TABLES_OF_SCHEMA = """
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')
"""
"""The tables that exist in one schema (a missing one needs CREATE on the schema to be made)."""


# --- the target's clock ---------------------------------------------------------------------------------------

TARGET_CLOCK = "SELECT clock_timestamp()"
"""The target's current time, to measure clock skew (``pipeline/clock.py``). ``clock_timestamp()``, not ``now()``:
``now()`` is the start of the transaction, which may lie before the round trip being measured."""


# --- target.protect: replicated tables refuse writes from sessions other than mssql2pg's (issue 17) ---------------

WRITER_SETTING = "mssql2pg.writer"
"""The session setting every mssql2pg target session carries (a startup parameter of its connection, see
:func:`mssql2pg.pipeline.connections.target_connector`). A placeholder setting with a dotted name: no client sets
it by accident (unlike ``application_name``, which tools copy and users type); a session can still set it on
purpose (``SET mssql2pg.writer = 'on'``), which is the documented way around the guard."""

PROTECT_TRIGGER = "mssql2pg_protect"
PROTECT_FUNCTION = qualified("mssql2pg", "refuse_foreign_write")

CREATE_PROTECT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {PROTECT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $mssql2pg_protect$
BEGIN
  IF current_setting('{WRITER_SETTING}', true) IS DISTINCT FROM 'on' THEN
    RAISE EXCEPTION '% is replicated by mssql2pg and protected (target.protect): % refused for this session',
      format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), TG_OP
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'change the data at the source (SQL Server); mssql2pg replicates it here. A mssql2pg command '
                   '(resync, reconcile --repair, dlq retry) writes here only when its configuration has '
                   'target.protect: true; to write anyway, set target.protect: false and restart the pipeline '
                   '(see docs/operations.md)';
  END IF;
  RETURN NULL;
END
$mssql2pg_protect$
"""
"""The guard's trigger function, in the control schema: refuses the statement unless the session is mssql2pg's
(the setting is exactly ``on``: ``SET mssql2pg.writer = 'off'`` must not open it). The table is named as an
identifier (``format('%I.%I')``), so a name with quotes or a dot reads unambiguously.
A statement-level trigger: once per statement, never per row, so the pipeline's own writes cost nothing
measurable."""

PROTECTED_TABLES = f"""
SELECT n.nspname, c.relname FROM pg_catalog.pg_trigger g
JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE g.tgname = '{PROTECT_TRIGGER}' AND NOT g.tgisinternal
"""
"""Every table that carries the guard (schema, name)."""


GUARD_PRIVILEGES = """
SELECT current_user, has_table_privilege(c.oid, 'TRIGGER'), pg_has_role(c.relowner, 'USAGE')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :name
"""
"""The role, whether it may create a trigger on one table (TRIGGER) and whether it may drop one (ownership):
asked before the guard is installed or removed, so a missing privilege is told by name."""


def grant_trigger(table: TargetTable, role: str) -> str:
    """Advice printed when the role lacks TRIGGER on ``table`` (never executed by mssql2pg)."""
    return f"GRANT TRIGGER ON {table.qualified_name} TO {quote_ident(role)};"


def protect_table(table: TargetTable) -> str:
    """Install the guard on one replicated table (the caller checks it is not there yet)."""
    return (
        f"CREATE TRIGGER {quote_ident(PROTECT_TRIGGER)} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
        f"ON {table.qualified_name} FOR EACH STATEMENT EXECUTE FUNCTION {PROTECT_FUNCTION}()"
    )


def unprotect_table(schema: str, name: str) -> str:
    """Remove the guard from one table (``target.protect`` set back to false, or the table no longer replicated)."""
    return f"DROP TRIGGER IF EXISTS {quote_ident(PROTECT_TRIGGER)} ON {qualified(schema, name)}"
