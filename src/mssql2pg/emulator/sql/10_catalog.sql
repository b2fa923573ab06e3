-- mssql2pg SQL Server CDC emulator: schemas, types, catalog tables and views.
-- Installed in one transaction by mssql2pg.emulator.install(); every statement is idempotent.

CREATE SCHEMA IF NOT EXISTS cdc;
CREATE SCHEMA IF NOT EXISTS sys;
CREATE SCHEMA IF NOT EXISTS cdc_emulator;

-- SQL Server type names that PostgreSQL lacks, as domains in schema sys (sys.tinyint, sys.money, ...).
DO $$
DECLARE d record;
BEGIN
  FOR d IN SELECT * FROM (VALUES
      ('tinyint', 'smallint CHECK (VALUE BETWEEN 0 AND 255)'),
      ('money', 'numeric(19,4) CHECK (VALUE BETWEEN -922337203685477.5808 AND 922337203685477.5807)'),
      ('smallmoney', 'numeric(10,4) CHECK (VALUE BETWEEN -214748.3648 AND 214748.3647)'),
      ('datetime', 'timestamp(3)'),
      ('smalldatetime', 'timestamp(0)'),
      ('datetime2', 'timestamp(6)'),
      ('datetimeoffset', 'text CHECK (VALUE ~ ''^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,7})? ?[+-]\d{2}:\d{2}$'')'),
      ('uniqueidentifier', 'uuid'),
      ('nvarchar', 'text'),
      ('varchar', 'text'),
      ('nchar', 'text'),
      ('ntext', 'text'),
      ('text', 'text'),
      ('varbinary', 'bytea'),
      ('binary', 'bytea'),
      ('image', 'bytea'),
      ('rowversion', 'bytea CHECK (octet_length(VALUE) = 8)'),
      ('hierarchyid', 'bytea'),
      ('geography', 'bytea'),
      ('geometry', 'bytea'),
      ('sql_variant', 'text')
    ) AS t(name, def)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = d.name AND typnamespace = 'sys'::regnamespace) THEN
      EXECUTE format('CREATE DOMAIN sys.%I AS %s', d.name, d.def);
    END IF;
  END LOOP;
END $$;

-- SQL Server system type ids (sys.types), keyed by SQL Server type name.
CREATE TABLE IF NOT EXISTS cdc_emulator.type_ids (
  name text PRIMARY KEY, system_type_id int NOT NULL, user_type_id int NOT NULL,
  max_length int NOT NULL, "precision" int NOT NULL, scale int NOT NULL);
INSERT INTO cdc_emulator.type_ids VALUES
  ('image', 34, 34, 16, 0, 0), ('text', 35, 35, 16, 0, 0), ('uniqueidentifier', 36, 36, 16, 0, 0),
  ('date', 40, 40, 3, 10, 0), ('time', 41, 41, 5, 16, 7), ('datetime2', 42, 42, 8, 27, 7),
  ('datetimeoffset', 43, 43, 10, 34, 7), ('tinyint', 48, 48, 1, 3, 0), ('smallint', 52, 52, 2, 5, 0),
  ('int', 56, 56, 4, 10, 0), ('smalldatetime', 58, 58, 4, 16, 0), ('real', 59, 59, 4, 24, 0),
  ('money', 60, 60, 8, 19, 4), ('datetime', 61, 61, 8, 23, 3), ('float', 62, 62, 8, 53, 0),
  ('sql_variant', 98, 98, 8016, 0, 0), ('ntext', 99, 99, 16, 0, 0), ('bit', 104, 104, 1, 1, 0),
  ('decimal', 106, 106, 17, 38, 38), ('numeric', 108, 108, 17, 38, 38), ('smallmoney', 122, 122, 4, 10, 4),
  ('bigint', 127, 127, 8, 19, 0), ('hierarchyid', 240, 128, 892, 0, 0), ('geometry', 240, 129, -1, 0, 0),
  ('geography', 240, 130, -1, 0, 0), ('varbinary', 165, 165, 8000, 0, 0), ('varchar', 167, 167, 8000, 0, 0),
  ('binary', 173, 173, 8000, 0, 0), ('char', 175, 175, 8000, 0, 0), ('timestamp', 189, 189, 8, 0, 0),
  ('nvarchar', 231, 231, 8000, 0, 0), ('nchar', 239, 239, 8000, 0, 0), ('xml', 241, 241, -1, 0, 0)
ON CONFLICT (name) DO NOTHING;

-- The SQL Server type of a PostgreSQL column: name, max_length (bytes, -1 = max), precision, scale.
-- strict = false (the sys.columns view) gives NULLs for a type with no SQL Server counterpart instead of an
-- error, so one odd column elsewhere in the database never breaks catalog queries.
CREATE OR REPLACE FUNCTION cdc_emulator.sqlserver_type(typ oid, typmod int, strict boolean,
    OUT name text, OUT max_length int, OUT "precision" int, OUT scale int)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  tname text; nsp text; chars int;
BEGIN
  SELECT t.typname, n.nspname INTO tname, nsp FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE t.oid = typ;
  IF nsp = 'sys' THEN
    name := CASE tname WHEN 'rowversion' THEN 'timestamp' ELSE tname END;  -- sys.types names it timestamp
  ELSE
    name := CASE tname
      WHEN 'bool' THEN 'bit' WHEN 'int2' THEN 'smallint' WHEN 'int4' THEN 'int' WHEN 'int8' THEN 'bigint'
      WHEN 'numeric' THEN 'decimal' WHEN 'float4' THEN 'real' WHEN 'float8' THEN 'float'
      WHEN 'date' THEN 'date' WHEN 'time' THEN 'time' WHEN 'timestamp' THEN 'datetime2'
      WHEN 'timestamptz' THEN 'datetimeoffset' WHEN 'varchar' THEN 'nvarchar' WHEN 'bpchar' THEN 'nchar'
      WHEN 'text' THEN 'nvarchar' WHEN 'bytea' THEN 'varbinary' WHEN 'uuid' THEN 'uniqueidentifier'
      WHEN 'xml' THEN 'xml' ELSE NULL END;
    IF name IS NULL AND NOT strict THEN
      RETURN;
    ELSIF name IS NULL THEN
      RAISE EXCEPTION 'Msg 22831: the emulator has no SQL Server type for PostgreSQL type %', format_type(typ, typmod)
        USING ERRCODE = '42804',
              HINT = 'use a type listed in docs/emulator.md (e.g. int, numeric(p,s), varchar(n), sys.money)';
    END IF;
  END IF;
  SELECT t.max_length, t."precision", t.scale INTO max_length, "precision", scale
    FROM cdc_emulator.type_ids t WHERE t.name = sqlserver_type.name;
  IF name IN ('decimal', 'numeric') THEN
    IF typmod >= 4 THEN
      "precision" := ((typmod - 4) >> 16) & 65535; scale := (typmod - 4) & 65535;
    ELSE
      "precision" := 38; scale := 10;   -- unconstrained numeric: widest SQL Server decimal with a useful scale
    END IF;
    max_length := CASE WHEN "precision" <= 9 THEN 5 WHEN "precision" <= 19 THEN 9
                       WHEN "precision" <= 28 THEN 13 ELSE 17 END;
  ELSIF name IN ('nvarchar', 'nchar') THEN
    chars := CASE WHEN typmod >= 4 THEN typmod - 4 ELSE -1 END;
    max_length := CASE WHEN chars < 0 OR chars > 4000 THEN -1 ELSE chars * 2 END;
    IF name = 'nchar' AND chars < 0 THEN max_length := 2; END IF;
  ELSIF name IN ('varchar', 'varbinary') THEN
    max_length := -1;
  ELSIF name IN ('time', 'datetime2', 'datetimeoffset') AND nsp <> 'sys' THEN
    scale := CASE WHEN typmod >= 0 THEN typmod ELSE 6 END;
  ELSIF name = 'datetime2' THEN
    scale := 6;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.sqlserver_type(typ oid, typmod int,
    OUT name text, OUT max_length int, OUT "precision" int, OUT scale int)
LANGUAGE sql STABLE AS $$ SELECT * FROM cdc_emulator.sqlserver_type(typ, typmod, true) $$;

-- The CDC catalog, with SQL Server's column names and order (reference/sqlserver-cdc.md section 1).
CREATE TABLE IF NOT EXISTS cdc.change_tables (
  object_id int NOT NULL PRIMARY KEY,
  version int NOT NULL DEFAULT 0,
  source_object_id int NOT NULL,
  capture_instance text NOT NULL,
  start_lsn bytea,
  end_lsn bytea,
  supports_net_changes boolean NOT NULL,
  has_drop_pending boolean NOT NULL DEFAULT false,
  role_name text,
  index_name text,
  filegroup_name text,
  create_date timestamp(3) NOT NULL DEFAULT localtimestamp(3),
  partition_switch boolean NOT NULL DEFAULT true,
  CONSTRAINT change_tables_unique_idx UNIQUE (capture_instance));
CREATE INDEX IF NOT EXISTS source_object_id_idx ON cdc.change_tables (source_object_id);

CREATE TABLE IF NOT EXISTS cdc.captured_columns (
  object_id int NOT NULL,
  column_name text NOT NULL,
  column_id int,
  column_type text NOT NULL,
  column_ordinal int NOT NULL,
  is_computed boolean NOT NULL DEFAULT false,
  masking_function text,
  PRIMARY KEY (object_id, column_ordinal));

CREATE TABLE IF NOT EXISTS cdc.index_columns (
  object_id int NOT NULL,
  column_name text NOT NULL,
  index_ordinal smallint NOT NULL,
  column_id int NOT NULL,
  PRIMARY KEY (object_id, index_ordinal, column_id));

CREATE TABLE IF NOT EXISTS cdc.ddl_history (
  source_object_id int,
  object_id int NOT NULL,
  required_column_update boolean NOT NULL,
  ddl_command text,
  ddl_lsn bytea NOT NULL,
  ddl_time timestamp(3));

CREATE TABLE IF NOT EXISTS cdc.lsn_time_mapping (
  start_lsn bytea NOT NULL,
  tran_begin_time timestamp(3),
  tran_end_time timestamp(3),
  tran_id bytea,
  tran_begin_lsn bytea,
  CONSTRAINT lsn_time_mapping_clustered_idx PRIMARY KEY (start_lsn));
CREATE INDEX IF NOT EXISTS lsn_time_mapping_end_time ON cdc.lsn_time_mapping (tran_end_time);

-- msdb.dbo.cdc_jobs, read through sys.sp_cdc_help_jobs().
CREATE TABLE IF NOT EXISTS cdc_emulator.cdc_jobs (
  job_type text PRIMARY KEY CHECK (job_type IN ('capture', 'cleanup')),
  maxtrans int, maxscans int, continuous boolean, pollinginterval bigint, retention bigint, threshold bigint);
INSERT INTO cdc_emulator.cdc_jobs VALUES
  ('capture', 500, 10, true, 5, NULL, NULL), ('cleanup', NULL, NULL, NULL, NULL, 4320, 5000)
ON CONFLICT DO NOTHING;

-- Emulator state.
CREATE TABLE IF NOT EXISTS cdc_emulator.settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO cdc_emulator.settings VALUES ('capture_mode', 'immediate'), ('cdc_enabled', 'false'),
  ('schema_version', '1') ON CONFLICT DO NOTHING;

-- The "log": commit LSNs come from this clock, advanced under an exclusive lock at commit, so that commit
-- order equals LSN order. Change LSNs (seqvals) come from a sequence, cached per session as the log would
-- interleave them, always below the commit LSN of their own transaction.
CREATE TABLE IF NOT EXISTS cdc_emulator.lsn_clock (id int PRIMARY KEY CHECK (id = 1), last bigint NOT NULL);
INSERT INTO cdc_emulator.lsn_clock VALUES (1, 1) ON CONFLICT DO NOTHING;
CREATE SEQUENCE IF NOT EXISTS cdc_emulator.change_seq CACHE 64;

-- Per-instance emulator facts (how to regenerate triggers after DDL). enable_lsn: an LSN allocated under the
-- capture lock when the instance was enabled, above every commit before it and below every commit after it;
-- it becomes start_lsn once capture has reached it. key_index: the index identifying rows (PK or @index_name).
CREATE TABLE IF NOT EXISTS cdc_emulator.instances (
  capture_instance text PRIMARY KEY,
  source_oid oid NOT NULL,
  ct_name text NOT NULL,
  pending_name text NOT NULL,
  key_columns text[] NOT NULL);
ALTER TABLE cdc_emulator.instances ADD COLUMN IF NOT EXISTS enable_lsn bytea;
ALTER TABLE cdc_emulator.instances ADD COLUMN IF NOT EXISTS key_index oid;
-- LOB handling follows the column's current type (a type change may make it a LOB), so it is not stored
ALTER TABLE cdc_emulator.instances DROP COLUMN IF EXISTS lob_columns;
ALTER TABLE cdc_emulator.instances DROP COLUMN IF EXISTS legacy_lob_columns;

-- The columns of each captured source table as DDL tracking last saw them, by column id (attnum): a DDL that
-- changes this shape is a column change for cdc.ddl_history (section 4); any other DDL is not.
CREATE TABLE IF NOT EXISTS cdc_emulator.source_columns (
  source_oid oid NOT NULL,
  attnum int NOT NULL,
  name text NOT NULL,
  typid oid NOT NULL,
  typmod int NOT NULL,
  not_null boolean NOT NULL,
  PRIMARY KEY (source_oid, attnum));

-- ddl_history rows of transactions not yet captured: published with the transaction's commit LSN by the
-- capture step that publishes its changes (section 1.4: rows are written when capture reads the DDL).
CREATE TABLE IF NOT EXISTS cdc_emulator.pending_ddl (
  ord bigserial PRIMARY KEY,
  txid xid8 NOT NULL,
  capture_instance text NOT NULL,
  source_object_id int NOT NULL,
  object_id int NOT NULL,
  required_column_update boolean NOT NULL,
  ddl_command text,
  ddl_time timestamp(3) NOT NULL);
CREATE INDEX IF NOT EXISTS pending_ddl_txid ON cdc_emulator.pending_ddl (txid);

-- Transactions committed but not yet scanned (agent mode): one row per (transaction, instance).
CREATE TABLE IF NOT EXISTS cdc_emulator.pending_tx (
  txid xid8 NOT NULL,
  commit_lsn bytea,
  tran_begin_time timestamp(3),
  tran_end_time timestamp(3),
  PRIMARY KEY (txid));
CREATE TABLE IF NOT EXISTS cdc_emulator.tx_touch (
  txid xid8 NOT NULL, capture_instance text NOT NULL, PRIMARY KEY (txid, capture_instance));

-- Catalog views with SQL Server's names (what mssql2pg's reader and Debezium-style queries read).
CREATE OR REPLACE VIEW sys.schemas AS
  SELECT n.oid::int AS schema_id, n.nspname::text AS name FROM pg_namespace n
   WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema';

CREATE OR REPLACE VIEW sys.tables AS
  SELECT c.oid::int AS object_id, c.relname::text AS name, c.relnamespace::int AS schema_id,
         EXISTS (SELECT 1 FROM cdc.change_tables ct WHERE ct.source_object_id = c.oid::int) AS is_tracked_by_cdc
    FROM pg_class c WHERE c.relkind IN ('r', 'p');

CREATE OR REPLACE VIEW sys.types AS
  SELECT name, system_type_id, user_type_id, max_length, "precision", scale, true AS is_nullable
    FROM cdc_emulator.type_ids;

CREATE OR REPLACE VIEW sys.columns AS
  SELECT a.attrelid::int AS object_id, a.attname::text AS name, a.attnum::int AS column_id,
         ti.system_type_id, ti.user_type_id, st.max_length, st."precision", st.scale,
         NOT a.attnotnull AS is_nullable, a.attidentity <> '' AS is_identity, a.attgenerated <> '' AS is_computed,
         coalesce(CASE WHEN a.attgenerated = '' THEN d.oid::int END, 0) AS default_object_id,
         -- the emulator stores every character type as UTF-8 text: a _UTF8 collation says so truthfully
         CASE WHEN st.name IN ('char', 'varchar', 'text', 'nchar', 'nvarchar', 'ntext', 'sysname')
              THEN 'Latin1_General_100_CI_AS_SC_UTF8'::text END AS collation_name
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    CROSS JOIN LATERAL cdc_emulator.sqlserver_type(a.atttypid, a.atttypmod, false) st
    JOIN cdc_emulator.type_ids ti ON ti.name = st.name
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attnum > 0 AND NOT a.attisdropped
     AND n.nspname NOT IN ('cdc_emulator');

-- A column default as SQL Server's sys.default_constraints.definition spells it: constants in its
-- parenthesised form ('((0))', '(''x'')', booleans as bit '((1))'), the current time as '(getdate())'. Any
-- other expression is PostgreSQL's own text in parentheses.
CREATE OR REPLACE FUNCTION cdc_emulator.tsql_default(expr text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT CASE
    WHEN expr ~ '^-?[0-9]+(\.[0-9]+)?$' THEN '((' || expr || '))'
    WHEN expr ~ '^''-?[0-9]+(\.[0-9]+)?''::(integer|bigint|smallint|numeric)$'
      THEN '((' || substring(expr FROM '^''(-?[0-9.]+)''') || '))'
    WHEN expr ~ '^''([^'']|'''')*''::(text|character varying|character|bpchar)(\([0-9]+\))?$'
      THEN '(' || substring(expr FROM '^(''([^'']|'''')*'')') || ')'
    WHEN expr = 'true' THEN '((1))'
    WHEN expr = 'false' THEN '((0))'
    WHEN expr IN ('now()', 'CURRENT_TIMESTAMP', 'LOCALTIMESTAMP', 'statement_timestamp()', 'transaction_timestamp()',
                  'clock_timestamp()') THEN '(getdate())'
    WHEN expr IN ('(now() AT TIME ZONE ''utc''::text)', '(now() AT TIME ZONE ''UTC''::text)',
                  'timezone(''utc''::text, now())', 'timezone(''UTC''::text, now())') THEN '(getutcdate())'
    WHEN expr = 'gen_random_uuid()' THEN '(newid())'
    ELSE '(' || expr || ')' END
$$;

-- sys.default_constraints: one row per column default (PostgreSQL defaults have no name: a system-style one).
CREATE OR REPLACE VIEW sys.default_constraints AS
  SELECT format('DF__%s__%s__%s', c.relname, a.attname, upper(lpad(to_hex(d.oid::int), 8, '0'))) AS name,
         d.oid::int AS object_id, c.relnamespace::int AS schema_id, d.adrelid::int AS parent_object_id,
         'D'::text AS type, 'DEFAULT_CONSTRAINT'::text AS type_desc, d.adnum::int AS parent_column_id,
         cdc_emulator.tsql_default(pg_get_expr(d.adbin, d.adrelid)) AS definition, true AS is_system_named
    FROM pg_attrdef d
    JOIN pg_class c ON c.oid = d.adrelid AND c.relkind IN ('r', 'p')
    JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum AND NOT a.attisdropped
                       AND a.attgenerated = '';

CREATE OR REPLACE VIEW sys.indexes AS
  SELECT i.indrelid::int AS object_id, ic.relname::text AS name, i.indexrelid::int AS index_id,
         CASE WHEN i.indisclustered THEN 1 ELSE 2 END AS type, i.indisprimary AS is_primary_key,
         i.indisunique AS is_unique
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid;

CREATE OR REPLACE VIEW sys.index_columns AS
  SELECT i.indrelid::int AS object_id, i.indexrelid::int AS index_id, k.ord::int AS index_column_id,
         k.attnum::int AS column_id, k.ord::int AS key_ordinal
    FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
   WHERE k.attnum > 0;


-- sys.databases: this database reports is_cdc_enabled after sys.sp_cdc_enable_db(); others report false.
CREATE OR REPLACE VIEW sys.databases AS
  SELECT d.datname::text AS name, d.oid::int AS database_id,
         CASE WHEN d.datname = current_database()
              THEN coalesce((SELECT value = 'true' FROM cdc_emulator.settings WHERE key = 'cdc_enabled'), false)
              ELSE false END AS is_cdc_enabled
    FROM pg_database d WHERE NOT d.datistemplate;
