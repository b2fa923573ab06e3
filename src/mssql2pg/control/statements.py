"""Every SQL text of the control schema ``mssql2pg``, in one place: its migrations, the statements that write it
and the queries that read it.

Values reach SQL only as bound parameters (``:name`` placeholders of pg8000.native); identifiers through
:func:`~mssql2pg.identifiers.quote_ident`. Nothing here executes anything.
"""

from __future__ import annotations

from mssql2pg.identifiers import quote_ident

CONTROL_SCHEMA = "mssql2pg"
CONTROL_COMPONENT = "control"  # the row of ``schema_version`` that holds the control schema's version


def _c(name: str) -> str:
    return f"{quote_ident(CONTROL_SCHEMA)}.{quote_ident(name)}"


# --- migrations -----------------------------------------------------------------------------------------------
# One tuple per version, applied in order by :mod:`mssql2pg.control.migrations`. A released version is never
# edited: a change is a new version. Every statement is idempotent (IF NOT EXISTS), because targets written by
# the release that added ``resume_after`` carry that column while still recording version 1.

CONTROL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mssql2pg.control'))"
"""Serialises schema changes of concurrent starts (held until the caller's transaction ends)."""

MIGRATION_1 = (
    f"CREATE SCHEMA IF NOT EXISTS {quote_ident(CONTROL_SCHEMA)}",
    f"""CREATE TABLE IF NOT EXISTS {_c("schema_version")} (
  component text PRIMARY KEY,
  version integer NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)""",
    f"""CREATE TABLE IF NOT EXISTS {_c("checkpoints")} (
  pipeline text PRIMARY KEY,
  lsn bytea NOT NULL CHECK (octet_length(lsn) = 10),
  lsn_text text NOT NULL,
  commit_time timestamp,
  updated_at timestamptz NOT NULL DEFAULT now()
)""",
    f"""CREATE TABLE IF NOT EXISTS {_c("table_state")} (
  pipeline text NOT NULL,
  source_table text NOT NULL,
  capture_instance text,
  target_table text NOT NULL,
  state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'needs-resync')),
  reason text,
  remediation text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, source_table)
)""",
    f"""CREATE TABLE IF NOT EXISTS {_c("dead_letters")} (
  id bigserial PRIMARY KEY,
  pipeline text NOT NULL,
  source_table text NOT NULL,
  capture_instance text,
  commit_lsn bytea NOT NULL,
  commit_lsn_text text NOT NULL,
  seqval bytea,
  operation smallint,
  source_tran_id bytea,
  change jsonb NOT NULL,
  error_class text NOT NULL,
  message text NOT NULL,
  stack text,
  first_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_attempt_at timestamptz NOT NULL DEFAULT now(),
  retry_count integer NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'resolved', 'ignored'))
)""",
    f"CREATE INDEX IF NOT EXISTS dead_letters_pending ON {_c('dead_letters')} (pipeline, status, source_table)",
)
"""Version 1, exactly as first released: checkpoints, table state, dead letters."""

MIGRATION_2 = (f"ALTER TABLE {_c('table_state')} ADD COLUMN IF NOT EXISTS resume_after bytea",)
"""Version 2: where a resynced table's changes resume (``mssql2pg resync``)."""

MIGRATION_3 = (
    f"""CREATE TABLE IF NOT EXISTS {_c("reconciliation_runs")} (
  id bigserial PRIMARY KEY,
  run_id uuid NOT NULL,
  pipeline text NOT NULL,
  source_table text NOT NULL,
  target_table text NOT NULL,
  status text NOT NULL CHECK (status IN ('consistent', 'inconsistent', 'error')),
  source_rows bigint NOT NULL,
  target_rows bigint NOT NULL,
  missing bigint NOT NULL,
  extra bigint NOT NULL,
  different bigint NOT NULL,
  keys jsonb NOT NULL,
  rechecked boolean NOT NULL,
  repaired bigint NOT NULL DEFAULT 0,
  suggested_action text NOT NULL,
  error text,
  started_at timestamptz NOT NULL,
  duration_seconds double precision NOT NULL
)""",
    f"CREATE INDEX IF NOT EXISTS reconciliation_runs_latest ON {_c('reconciliation_runs')} "
    "(pipeline, source_table, started_at DESC)",
)
"""Version 3: one row per table and run of ``mssql2pg reconcile`` (counts, the bounded key lists, the action)."""

MIGRATION_4 = (
    f"ALTER TABLE {_c('checkpoints')} ADD COLUMN IF NOT EXISTS group_name text NOT NULL DEFAULT ''",
    f"ALTER TABLE {_c('checkpoints')} DROP CONSTRAINT IF EXISTS checkpoints_pkey, "
    "ADD CONSTRAINT checkpoints_pkey PRIMARY KEY (pipeline, group_name)",
    f"ALTER TABLE {_c('table_state')} ADD COLUMN IF NOT EXISTS group_name text NOT NULL DEFAULT ''",
)
"""Version 4: a position per table group (``pipeline.group``). ``checkpoints`` is keyed by (pipeline,
group_name); ``table_state.group_name`` is the group whose checkpoint covers the table. Rows written before
carry ``''``: the position of a process without ``pipeline.group``, which every group that has no row of its
own inherits (:data:`SELECT_CHECKPOINT_ROW`)."""

MIGRATION_6 = (
    f"""CREATE TABLE IF NOT EXISTS {_c("schema_changes")} (
  id bigserial PRIMARY KEY,
  pipeline text NOT NULL,
  detected_at timestamptz NOT NULL DEFAULT now(),
  source_table text NOT NULL,
  capture_instance text,
  change text NOT NULL,
  column_name text,
  old_type text,
  new_type text,
  status text NOT NULL CHECK (status IN ('auto-applied', 'pending-review', 'failed', 'approved')),
  applied_at timestamptz,
  ddl text,
  detail text
)""",
    f"CREATE INDEX IF NOT EXISTS schema_changes_by_table ON {_c('schema_changes')} (pipeline, source_table, id)",
)
"""Version 6 (issue 12): one row per source schema change the pipeline detected, what it did about it (the DDL
run, or the one it recommends) and its status. ``detail`` says in words what happened and what to do."""
MIGRATION_5 = (
    f"""CREATE TABLE IF NOT EXISTS {_c("snapshots")} (
  pipeline text NOT NULL,
  source_table text NOT NULL,
  group_name text NOT NULL DEFAULT '',
  snapshot_lsn bytea NOT NULL CHECK (octet_length(snapshot_lsn) = 10),
  snapshot_lsn_text text NOT NULL,
  last_key jsonb,
  rows_loaded bigint NOT NULL DEFAULT 0,
  rows_estimated bigint,
  state text NOT NULL DEFAULT 'loading' CHECK (state IN ('loading', 'done')),
  consistent_lsn bytea,
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (pipeline, source_table)
)""",
)
"""Version 5: the initial snapshot of each table (``snapshot.mode: initial``): its snapshot LSN, the key of the
last row committed (a restart resumes after it), rows loaded and the estimated total, ``loading`` or ``done``."""

SELECT_SCHEMA_VERSION = f"SELECT version FROM {_c('schema_version')} WHERE component = :component"
SET_SCHEMA_VERSION = (
    f"INSERT INTO {_c('schema_version')} (component, version) VALUES (:component, :version) "
    "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, applied_at = now()"
)

CONTROL_TABLE_EXISTS = "SELECT to_regclass(:t) IS NOT NULL"

SELECT_CONTROL_COLUMNS = f"""
SELECT column_name FROM information_schema.columns WHERE table_schema = '{CONTROL_SCHEMA}' AND table_name = :t
"""

# --- checkpoints ----------------------------------------------------------------------------------------------

SELECT_CHECKPOINT_ROW = f"""
SELECT lsn, commit_time, updated_at FROM {_c("checkpoints")}
WHERE pipeline = :pipeline AND group_name IN (:group_name, '')
ORDER BY group_name = :group_name DESC LIMIT 1
"""
"""The group's own checkpoint row or, while it has none, the row without a group (``''``, the position before
groups had their own, or of a process replicating every group) that it inherits."""

SELECT_GROUP_CHECKPOINTS = f"""
SELECT group_name, lsn, commit_time, updated_at FROM {_c("checkpoints")} WHERE pipeline = :pipeline
ORDER BY group_name
"""

SELECT_CHECKPOINT_ROW_V2 = f"SELECT lsn, commit_time, updated_at FROM {_c('checkpoints')} WHERE pipeline = :pipeline"
"""A target before version 4 (readers never migrate): one row per pipeline."""

ADVANCE_CHECKPOINT = f"""
INSERT INTO {_c("checkpoints")} AS c (pipeline, group_name, lsn, lsn_text, commit_time, updated_at)
VALUES (:pipeline, :group_name, :lsn, :lsn_text, :commit_time, now())
ON CONFLICT (pipeline, group_name) DO UPDATE
SET lsn = EXCLUDED.lsn, lsn_text = EXCLUDED.lsn_text,
    commit_time = coalesce(EXCLUDED.commit_time, c.commit_time), updated_at = now()
WHERE c.lsn <= EXCLUDED.lsn
RETURNING lsn
"""

# --- table state ----------------------------------------------------------------------------------------------

REGISTER_TABLE_STATE = f"""
INSERT INTO {_c("table_state")} (pipeline, source_table, capture_instance, target_table, group_name)
VALUES (:pipeline, :source_table, :capture_instance, :target_table, :group_name)
ON CONFLICT (pipeline, source_table) DO UPDATE
SET capture_instance = EXCLUDED.capture_instance, target_table = EXCLUDED.target_table, updated_at = now()
"""

SET_TABLE_STATE = f"""
INSERT INTO {_c("table_state")} (pipeline, source_table, target_table, state, reason, remediation)
VALUES (:pipeline, :source_table, :source_table, :state, :reason, :remediation)
ON CONFLICT (pipeline, source_table) DO UPDATE
SET state = EXCLUDED.state, reason = EXCLUDED.reason, remediation = EXCLUDED.remediation, updated_at = now()
"""

SELECT_TABLE_STATE = f"""
SELECT state, reason, remediation FROM {_c("table_state")} WHERE pipeline = :pipeline AND source_table = :source_table
"""

SELECT_TABLE_CAPTURE_INSTANCE = f"""
SELECT capture_instance FROM {_c("table_state")} WHERE pipeline = :pipeline AND source_table = :source_table
"""

HOLD_TABLE_POSITION = f"""
UPDATE {_c("table_state")} SET resume_after = :lsn, updated_at = now()
WHERE pipeline = :pipeline AND source_table = :source_table AND (resume_after IS NULL OR resume_after < :lsn)
"""

SELECT_HELD_POSITIONS = f"""
SELECT source_table, resume_after FROM {_c("table_state")}
WHERE pipeline = :pipeline AND state = 'paused' AND resume_after IS NOT NULL
"""

SELECT_TABLE_STATES = f"""
SELECT source_table, target_table, state, reason, remediation FROM {_c("table_state")}
WHERE pipeline = :pipeline ORDER BY source_table
"""

SELECT_TABLE_GROUP_NAMES = f"SELECT source_table, group_name FROM {_c('table_state')} WHERE pipeline = :pipeline"

SELECT_INACTIVE_TABLES = f"""
SELECT source_table, state, reason FROM {_c("table_state")} WHERE pipeline = :pipeline AND state <> 'active'
"""

SELECT_RESUME_POSITIONS = f"""
SELECT source_table, resume_after FROM {_c("table_state")}
WHERE pipeline = :pipeline AND group_name = :group_name AND state = 'active' AND resume_after IS NOT NULL
"""

SELECT_RESUME_POSITIONS_V2 = f"""
SELECT source_table, resume_after FROM {_c("table_state")}
WHERE pipeline = :pipeline AND state = 'active' AND resume_after IS NOT NULL
"""

SELECT_TABLE_GROUPS = f"""
SELECT source_table, group_name, resume_after FROM {_c("table_state")}
WHERE pipeline = :pipeline AND source_table = ANY(CAST(:tables AS text[])) AND group_name <> :group_name
ORDER BY source_table FOR UPDATE
"""
"""Tables of a pipeline whose position another group's checkpoint covers (they moved to ``group_name``)."""

MOVE_TABLE_TO_GROUP = f"""
UPDATE {_c("table_state")} SET group_name = :group_name, resume_after = :lsn, updated_at = now()
WHERE pipeline = :pipeline AND source_table = :source_table
"""

MARK_RESYNCED = f"""
INSERT INTO {_c("table_state")} (pipeline, source_table, capture_instance, target_table, state, reason, resume_after,
  group_name)
VALUES (:pipeline, :source_table, :capture_instance, :target_table, 'active', :reason, :lsn, :group_name)
ON CONFLICT (pipeline, source_table) DO UPDATE
SET capture_instance = EXCLUDED.capture_instance, target_table = EXCLUDED.target_table, state = 'active',
    reason = EXCLUDED.reason, remediation = NULL, resume_after = EXCLUDED.resume_after, updated_at = now()
"""

ADVANCE_RESUME_POSITION = f"""
UPDATE {_c("table_state")} SET resume_after = :lsn, updated_at = now()
WHERE pipeline = :pipeline AND source_table = :source_table AND resume_after < :lsn
"""

CLEAR_RESUME_POSITION = f"""
UPDATE {_c("table_state")} SET resume_after = NULL, updated_at = now()
WHERE pipeline = :pipeline AND source_table = :source_table AND resume_after <= :lsn
"""

TRY_TABLE_LOCK = "SELECT pg_try_advisory_lock(hashtext('mssql2pg.table'), hashtext(:pipeline || '/' || :source_table))"
"""A session lock per (pipeline, source table), held by whatever writes the table: the applier of a running
pipeline, or a resync. Released when its connection closes, so a crash cannot leave it behind."""

SELECT_GROUP_WRITERS = f"""
SELECT DISTINCT ON (t.group_name) t.group_name, a.application_name, host(a.client_addr), a.backend_start
FROM {_c("table_state")} t
JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = hashtext('mssql2pg.table')::oid AND l.objid = hashtext(t.pipeline || '/' || t.source_table)::oid
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE t.pipeline = :pipeline
ORDER BY t.group_name, a.backend_start
"""
"""Which session writes each group of a pipeline: the holder of its tables' write locks
(:data:`TRY_TABLE_LOCK`, two int4 keys: ``classid``/``objid`` in ``pg_locks``, ``objsubid`` 2), named by its
``application_name`` (``mssql2pg host:pid``). Held by the server, so a process that died holds none; only this
database's locks (another warehouse on the same server may run a pipeline of the same name)."""

REGISTER_INSTANCE = "SELECT pg_try_advisory_lock(hashtext('mssql2pg.instance/' || :pipeline), hashtext(:instance))"
"""A session lock per live process of a pipeline that spreads its groups (``pipeline.group: auto``), held on a
connection of its own for as long as the process lives; the server drops it when the process dies."""

COUNT_INSTANCES = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = hashtext('mssql2pg.instance/' || :pipeline)::oid
"""
"""How many processes of the pipeline hold :data:`REGISTER_INSTANCE`'s lock: the live spreading processes (of
this database: advisory locks are per database, ``pg_locks`` shows the whole server's)."""

# --- dead letters ---------------------------------------------------------------------------------------------

INSERT_DEAD_LETTER = f"""
INSERT INTO {_c("dead_letters")} (pipeline, source_table, capture_instance, commit_lsn, commit_lsn_text, seqval,
  operation, source_tran_id, change, error_class, message, stack)
VALUES (:pipeline, :source_table, :capture_instance, :commit_lsn, :commit_lsn_text, :seqval, :operation,
  :source_tran_id, CAST(:change AS jsonb), :error_class, :message, :stack)
RETURNING id
"""

DEAD_LETTER_COLUMNS = (
    "id, pipeline, source_table, capture_instance, commit_lsn_text, seqval, operation, source_tran_id, change, "
    "error_class, message, stack, first_attempt_at, last_attempt_at, retry_count, status"
)


def _dead_letter_columns(last_error: bool) -> str:
    """The columns read, with ``last_error`` (version 8) or NULL in its place on a target not upgraded yet
    (readers never migrate)."""
    return f"{DEAD_LETTER_COLUMNS}, {'last_error' if last_error else 'NULL'}"


def select_dead_letters(*, by_status: bool, by_pipeline: bool, limit: bool, last_error: bool = True) -> str:
    where = []
    if by_status:
        where.append("status = :status")
    if by_pipeline:
        where.append("pipeline = :pipeline")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {_dead_letter_columns(last_error)} FROM {_c('dead_letters')}{clause} ORDER BY id" + (
        " LIMIT :limit" if limit else ""
    )


def select_dead_letter(*, last_error: bool = True) -> str:
    """One dead letter by id, locked (a retry updates it)."""
    return f"SELECT {_dead_letter_columns(last_error)} FROM {_c('dead_letters')} WHERE id = :id FOR UPDATE"


RESOLVE_DEAD_LETTER = f"""
UPDATE {_c("dead_letters")} SET status = 'resolved', last_attempt_at = now(), retry_count = retry_count + 1
WHERE id = :id
"""

FAIL_DEAD_LETTER_RETRY = f"""
UPDATE {_c("dead_letters")}
SET last_attempt_at = now(), retry_count = retry_count + 1, last_error = :last_error
WHERE id = :id
"""
"""A retry refused again: ``error_class``, ``message`` and ``stack`` keep why the change was dead-lettered (a
conflict stays a conflict in ``dlq list``); the retry's refusal goes to ``last_error``."""

IGNORE_DEAD_LETTER = (
    f"UPDATE {_c('dead_letters')} SET status = 'ignored' WHERE id = :id AND status = 'pending' RETURNING id"
)

COUNT_DEAD_LETTERS_BY_STATUS = (
    f"SELECT status, count(*) FROM {_c('dead_letters')} WHERE pipeline = :pipeline GROUP BY status ORDER BY status"
)

# --- reconciliation runs ----------------------------------------------------------------------------------------

INSERT_RECONCILIATION_RUN = f"""
INSERT INTO {_c("reconciliation_runs")} (run_id, pipeline, source_table, target_table, status, source_rows,
  target_rows, missing, extra, different, keys, rechecked, repaired, suggested_action, error, started_at,
  duration_seconds)
VALUES (CAST(:run_id AS uuid), :pipeline, :source_table, :target_table, :status, :source_rows, :target_rows,
  :missing, :extra, :different, CAST(:keys AS jsonb), :rechecked, :repaired, :suggested_action, :error,
  :started_at, :duration_seconds)"""

SELECT_LATEST_RECONCILIATIONS = f"""
SELECT DISTINCT ON (source_table) source_table, status, missing, extra, different, started_at, duration_seconds
FROM {_c("reconciliation_runs")} WHERE pipeline = :pipeline
ORDER BY source_table, started_at DESC, id DESC"""


# --- schema changes ---------------------------------------------------------------------------------------------

INSERT_SCHEMA_CHANGE = f"""
INSERT INTO {_c("schema_changes")} (pipeline, source_table, capture_instance, change, column_name, old_type,
  new_type, status, applied_at, ddl, detail)
VALUES (:pipeline, :source_table, :capture_instance, :change, :column_name, :old_type, :new_type, :status,
  CASE WHEN :status IN ('auto-applied', 'approved') THEN now() END, :ddl, :detail)
RETURNING id, detected_at
"""

SCHEMA_CHANGE_COLUMNS = (
    "id, pipeline, detected_at, source_table, capture_instance, change, column_name, old_type, new_type, status, "
    "applied_at, ddl, detail"
)

SELECT_SCHEMA_CHANGES = f"""
SELECT {SCHEMA_CHANGE_COLUMNS} FROM {_c("schema_changes")}
WHERE pipeline = :pipeline AND (CAST(:status AS text) IS NULL OR status = :status) ORDER BY id
"""

SELECT_SCHEMA_CHANGE = (
    f"SELECT {SCHEMA_CHANGE_COLUMNS} FROM {_c('schema_changes')} WHERE pipeline = :pipeline AND id = :id"
)

SELECT_RECORDED_SCHEMA_CHANGE = f"""
SELECT id FROM {_c("schema_changes")}
WHERE pipeline = :pipeline AND source_table = :source_table AND change = :change
  AND capture_instance IS NOT DISTINCT FROM CAST(:capture_instance AS text)
  AND column_name IS NOT DISTINCT FROM CAST(:column_name AS text)
  AND old_type IS NOT DISTINCT FROM CAST(:old_type AS text) AND new_type IS NOT DISTINCT FROM CAST(:new_type AS text)
  AND status <> 'failed'
ORDER BY id DESC LIMIT 1
"""

COUNT_SCHEMA_CHANGES = f"""
SELECT source_table, status, count(*) FROM {_c("schema_changes")} WHERE pipeline = :pipeline GROUP BY 1, 2
"""

APPROVE_SCHEMA_CHANGE = f"""
UPDATE {_c("schema_changes")} SET status = 'approved', applied_at = now() WHERE pipeline = :pipeline AND id = :id
"""

FAIL_SCHEMA_CHANGE = f"""
UPDATE {_c("schema_changes")} SET status = 'failed', applied_at = NULL, detail = :detail
WHERE pipeline = :pipeline AND id = :id
"""
# --- initial snapshots ----------------------------------------------------------------------------------------

START_SNAPSHOT = f"""
INSERT INTO {_c("snapshots")} (pipeline, source_table, group_name, snapshot_lsn, snapshot_lsn_text, rows_estimated)
VALUES (:pipeline, :source_table, :group_name, :lsn, :lsn_text, :estimated)
ON CONFLICT (pipeline, source_table) DO NOTHING
"""
"""A second process starting the same load at once keeps the first one's snapshot LSN (it reads the row back)."""

SELECT_SNAPSHOT = f"""
SELECT source_table, group_name, snapshot_lsn, last_key, rows_loaded, rows_estimated, state, consistent_lsn,
  started_at, updated_at, finished_at
FROM {_c("snapshots")} WHERE pipeline = :pipeline AND source_table = :source_table
"""

SELECT_SNAPSHOTS = f"""
SELECT source_table, group_name, snapshot_lsn, last_key, rows_loaded, rows_estimated, state, consistent_lsn,
  started_at, updated_at, finished_at
FROM {_c("snapshots")} WHERE pipeline = :pipeline ORDER BY source_table
"""

SET_SNAPSHOT_ESTIMATE = f"""
UPDATE {_c("snapshots")} SET rows_estimated = :estimated, updated_at = now()
WHERE pipeline = :pipeline AND source_table = :source_table
"""

ADVANCE_SNAPSHOT = f"""
UPDATE {_c("snapshots")} SET last_key = CAST(:last_key AS jsonb), rows_loaded = :rows_loaded, updated_at = now()
WHERE pipeline = :pipeline AND source_table = :source_table AND state = 'loading'
"""
"""In the transaction that commits a chunk's rows: the progress moves with the data, never apart from it."""

FINISH_SNAPSHOT = f"""
UPDATE {_c("snapshots")} SET state = 'done', rows_loaded = :rows_loaded, consistent_lsn = :consistent_lsn,
  updated_at = now(), finished_at = now()
WHERE pipeline = :pipeline AND source_table = :source_table
"""


# --- target conflicts: writes to the target by someone else (issue 17 point 1) -----------------------------------

MIGRATION_7 = (
    f"""CREATE TABLE IF NOT EXISTS {_c("target_conflicts")} (
  pipeline text NOT NULL,
  source_table text NOT NULL,
  kind text NOT NULL,
  conflicts bigint NOT NULL DEFAULT 0,
  first_at timestamptz NOT NULL DEFAULT now(),
  last_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, source_table, kind)
)""",
)
"""Version 7 (issue 17): how many conflicts with writes by someone else the applier met, per table and kind
(``mssql2pg.model.TARGET_CONFLICT_KINDS``), counted in the transaction that applies the changes and moves the
checkpoint (so a count is exactly once, whatever restarts), for ``mssql2pg status`` across processes."""

COUNT_TARGET_CONFLICTS = f"""
INSERT INTO {_c("target_conflicts")} AS c (pipeline, source_table, kind, conflicts)
VALUES (:pipeline, :source_table, :kind, :n)
ON CONFLICT (pipeline, source_table, kind) DO UPDATE SET conflicts = c.conflicts + EXCLUDED.conflicts, last_at = now()
"""

SELECT_TARGET_CONFLICTS = f"""
SELECT source_table, kind, conflicts, last_at FROM {_c("target_conflicts")} WHERE pipeline = :pipeline
ORDER BY source_table, kind
"""


# --- dead letters: the last retry's error, apart from why the change was dead-lettered ------------------------

MIGRATION_8 = (f"ALTER TABLE {_c('dead_letters')} ADD COLUMN IF NOT EXISTS last_error text",)
"""Version 8: ``dead_letters.last_error``, the error of the latest ``dlq retry`` that was refused again (class and
message), so that a retry no longer overwrites the letter's own ``error_class`` and ``message``."""
