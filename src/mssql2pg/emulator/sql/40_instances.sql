-- Capture instances: enable, generated change tables, triggers and table-valued functions, and dropping one.

CREATE OR REPLACE PROCEDURE sys.sp_cdc_enable_db()
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE cdc_emulator.settings SET value = 'true' WHERE key = 'cdc_enabled';
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.require_cdc_db() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF cdc_emulator.setting('cdc_enabled') IS DISTINCT FROM 'true' THEN
    RAISE EXCEPTION 'Msg 22901: The database ''%'' is not enabled for Change Data Capture.', current_database()
      USING ERRCODE = '55000', HINT = 'CALL sys.sp_cdc_enable_db()';
  END IF;
END $$;

-- Parse @captured_column_list: comma-separated, names optionally quoted with "" or [].
CREATE OR REPLACE FUNCTION cdc_emulator.parse_column_list(list text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE item text; out text[] := '{}';
BEGIN
  IF list IS NULL THEN RETURN NULL; END IF;
  FOREACH item IN ARRAY string_to_array(list, ',') LOOP
    item := btrim(item);
    IF item ~ '^\[.*\]$' THEN item := replace(substr(item, 2, length(item) - 2), ']]', ']');
    ELSIF item ~ '^".*"$' THEN item := replace(substr(item, 2, length(item) - 2), '""', '"');
    END IF;
    IF item <> '' THEN out := out || item; END IF;
  END LOOP;
  RETURN out;
END $$;

CREATE OR REPLACE PROCEDURE sys.sp_cdc_enable_table(
    source_schema text, source_name text, role_name text,
    capture_instance text DEFAULT NULL, supports_net_changes boolean DEFAULT NULL,
    index_name text DEFAULT NULL, captured_column_list text DEFAULT NULL,
    filegroup_name text DEFAULT NULL, allow_partition_switch boolean DEFAULT true)
LANGUAGE plpgsql AS $$
DECLARE
  src oid;
  ci text := coalesce(rtrim(capture_instance), source_schema || '_' || source_name);
  wanted text[] := cdc_emulator.parse_column_list(captured_column_list);
  key_idx oid;
  key_cols text[];
  idx_name text;
  net boolean;
  ct_name text := ci || '_CT';
  pending_name text := ci || '_pending';
  ct_oid oid;
  col record;
  ord int := 0;
  coldefs text := '';
  missing text;
  enable_lsn bytea;
BEGIN
  PERFORM cdc_emulator.require_cdc_db();
  IF source_schema = 'cdc' THEN
    RAISE EXCEPTION 'Msg 22913: Tables in the cdc schema cannot be enabled for Change Data Capture.'
      USING ERRCODE = '42501';
  END IF;
  SELECT c.oid INTO src FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = source_schema AND c.relname = source_name AND c.relkind IN ('r', 'p');
  IF src IS NULL THEN
    RAISE EXCEPTION 'Msg 22830: Source table ''%.%'' does not exist in the current database.', source_schema, source_name
      USING ERRCODE = '42P01';
  END IF;
  -- like SQL Server's schema lock: wait for transactions writing the table to commit (their changes stay below
  -- the new instance's start LSN) and hold later writers until the instance exists
  EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', src::regclass);
  IF length(ci) > 100 OR octet_length(ct_name) > 63 OR octet_length('fn_cdc_get_net_changes_' || ci) > 63 THEN
    RAISE EXCEPTION 'Msg 22997: The capture instance name ''%'' is too long for the emulator (PostgreSQL names are limited to 63 bytes).', ci
      USING ERRCODE = '42622', HINT = 'pass a shorter capture_instance';
  END IF;
  IF EXISTS (SELECT 1 FROM cdc.change_tables WHERE change_tables.capture_instance = ci) THEN
    RAISE EXCEPTION 'Msg 22926: Could not create a capture instance because the capture instance name ''%'' already exists in the current database.', ci
      USING ERRCODE = '42710';
  END IF;
  IF (SELECT count(*) FROM cdc.change_tables WHERE source_object_id = src::int) >= 2 THEN
    RAISE EXCEPTION 'Msg 22962: Two capture instances already exist for source table ''%.%''. A table can have at most two capture instances. If you want to create a new capture instance for this table, you must first disable one of the existing capture instances.', source_schema, source_name
      USING ERRCODE = '54000';
  END IF;
  -- the row identifier: @index_name (a unique index) or the primary key
  IF index_name IS NOT NULL THEN
    SELECT i.indexrelid INTO key_idx FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = src AND ic.relname = index_name AND i.indisunique;
    IF key_idx IS NULL THEN
      RAISE EXCEPTION 'Msg 22853: Could not locate unique index ''%'' on source table ''%.%''.', index_name, source_schema, source_name
        USING ERRCODE = '42704';
    END IF;
  ELSE
    SELECT i.indexrelid INTO key_idx FROM pg_index i WHERE i.indrelid = src AND i.indisprimary;
  END IF;
  IF key_idx IS NOT NULL THEN
    SELECT relname INTO idx_name FROM pg_class WHERE oid = key_idx;
    SELECT array_agg(a.attname::text ORDER BY k.ord) INTO key_cols
      FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indexrelid = key_idx;
  ELSE
    key_cols := '{}';
  END IF;
  net := coalesce(supports_net_changes, key_idx IS NOT NULL);
  IF net AND key_idx IS NULL THEN
    RAISE EXCEPTION 'Msg 22939: The parameter @supports_net_changes is set to 1, but the source table does not have a primary key defined and no alternate unique index has been specified.'
      USING ERRCODE = '22023';
  END IF;
  IF wanted IS NOT NULL THEN
    SELECT string_agg(w, ', ') INTO missing FROM unnest(wanted) w
     WHERE w NOT IN (SELECT attname FROM pg_attribute WHERE attrelid = src AND attnum > 0 AND NOT attisdropped);
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'Msg 22832: Column(s) % in @captured_column_list do not exist in source table ''%.%''.', missing, source_schema, source_name
        USING ERRCODE = '42703';
    END IF;
    SELECT string_agg(k, ', ') INTO missing FROM unnest(key_cols) k WHERE NOT k = ANY(wanted);
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'Msg 22833: Could not enable Change Data Capture: the index columns (%) must be in @captured_column_list.', missing
        USING ERRCODE = '22023';
    END IF;
  END IF;
  -- the change table: system columns, captured columns (all nullable, same types), __$command_id last
  EXECUTE format('CREATE TABLE cdc.%I ("__$start_lsn" bytea NOT NULL, "__$end_lsn" bytea, "__$seqval" bytea NOT NULL, '
                 '"__$operation" int NOT NULL, "__$update_mask" bytea)', ct_name);
  EXECUTE format('CREATE TABLE cdc_emulator.%I (__txid xid8 NOT NULL, __ord bigserial, "__$seqval" bytea NOT NULL, '
                 '"__$operation" int NOT NULL, "__$update_mask" bytea)', pending_name);
  ct_oid := format('cdc.%I', ct_name)::regclass::oid;
  INSERT INTO cdc.change_tables (object_id, source_object_id, capture_instance, start_lsn, supports_net_changes,
                                 role_name, index_name, filegroup_name, partition_switch)
  VALUES (ct_oid::int, src::int, ci, NULL, net, role_name, idx_name, filegroup_name, coalesce(allow_partition_switch, true));
  FOR col IN
    SELECT a.attname::text AS name, a.attnum::int AS attnum, format_type(a.atttypid, a.atttypmod) AS pgtype,
           st.name AS sqltype, st.max_length, a.attgenerated <> '' AS computed,
           CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS basetype
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      CROSS JOIN LATERAL cdc_emulator.sqlserver_type(a.atttypid, a.atttypmod) st
     WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped
       AND (wanted IS NULL OR a.attname = ANY(wanted))
     ORDER BY a.attnum
  LOOP
    ord := ord + 1;
    INSERT INTO cdc.captured_columns VALUES (ct_oid::int, col.name, col.attnum, col.sqltype, ord, col.computed, NULL);
    -- change-table columns are nullable: a domain's NOT NULL must not apply, so sys domains keep their own type
    EXECUTE format('ALTER TABLE cdc.%I ADD COLUMN %I %s', ct_name, col.name,
                   CASE WHEN col.sqltype = 'timestamp' THEN 'bytea' ELSE col.pgtype END);
    EXECUTE format('ALTER TABLE cdc_emulator.%I ADD COLUMN %I %s', pending_name, col.name,
                   CASE WHEN col.sqltype = 'timestamp' THEN 'bytea' ELSE col.pgtype END);
  END LOOP;
  EXECUTE format('ALTER TABLE cdc.%I ADD COLUMN "__$command_id" int', ct_name);
  EXECUTE format('ALTER TABLE cdc_emulator.%I ADD COLUMN "__$command_id" int', pending_name);
  EXECUTE format('CREATE INDEX ON cdc.%I ("__$start_lsn", "__$command_id", "__$seqval", "__$operation")', ct_name);
  EXECUTE format('CREATE INDEX ON cdc_emulator.%I (__txid)', pending_name);
  INSERT INTO cdc.index_columns
    SELECT ct_oid::int, k, o::smallint, (SELECT attnum FROM pg_attribute WHERE attrelid = src AND attname = k)
      FROM unnest(key_cols) WITH ORDINALITY AS u(k, o);
  -- valid from an LSN above every commit so far and below every later one: at once in immediate mode (capture
  -- happens at commit), from the scan that reaches it in agent mode (cdc_emulator.recognise_instances)
  PERFORM cdc_emulator.capture_lock();
  enable_lsn := cdc_emulator.next_commit_lsn();
  INSERT INTO cdc_emulator.instances (capture_instance, source_oid, ct_name, pending_name, key_columns, enable_lsn,
                                      key_index)
  VALUES (ci, src, ct_name, pending_name, key_cols, enable_lsn, key_idx);
  IF cdc_emulator.setting('capture_mode') = 'immediate' THEN
    UPDATE cdc.change_tables SET start_lsn = enable_lsn WHERE change_tables.capture_instance = ci;
  END IF;
  PERFORM cdc_emulator.snapshot_columns(src);
  PERFORM cdc_emulator.generate(ci);
END $$;

-- Remember the source table's columns (by column id) as DDL tracking's "before" for the next DDL.
CREATE OR REPLACE FUNCTION cdc_emulator.snapshot_columns(src oid) RETURNS void
LANGUAGE sql AS $$
  DELETE FROM cdc_emulator.source_columns WHERE source_oid = src;
  INSERT INTO cdc_emulator.source_columns
    SELECT a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull
      FROM pg_attribute a WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped;
$$;

-- (Re)create an instance's triggers and functions from the catalog and the source table's current shape.
-- Captured columns are found in the source by column id (captured_columns.column_id = attnum), as SQL Server's
-- capture does: a dropped column is captured as NULL from then on (section 4), and a column added later under
-- a dropped column's name is another column. LOB rules follow each column's current type.
-- Injection safety: every generated body is built as text, names quoted by format(%I / %L), and handed to
-- CREATE FUNCTION as ONE quoted literal (%L), so no name can end a body or add a statement.
CREATE OR REPLACE FUNCTION cdc_emulator.generate(ci text) RETURNS void
LANGUAGE plpgsql AS $gen$
DECLARE
  inst cdc_emulator.instances;
  src text;
  n int;
  cols text; vals_new text; vals_old text; vals_old_before text; changed text; out_cols text;
  keychanged text; fullmask text; net boolean;
  fn text;
  kind record;
BEGIN
  SELECT * INTO inst FROM cdc_emulator.instances WHERE capture_instance = ci;
  src := inst.source_oid::regclass::text;
  SELECT supports_net_changes INTO net FROM cdc.change_tables WHERE capture_instance = ci;
  WITH c AS (
    SELECT cc.column_name AS ct_col, cc.column_ordinal AS ord, cc.is_computed AS computed,
           a.attname::text AS src_col, st.name AS sqltype, st.max_length,
           CASE WHEN st.name = 'xml' THEN '::text' ELSE '' END AS cmp   -- xml has no equality operator: compare text
      FROM cdc.captured_columns cc JOIN cdc.change_tables ct ON ct.object_id = cc.object_id
      LEFT JOIN pg_attribute a ON a.attrelid = inst.source_oid AND a.attnum = cc.column_id AND NOT a.attisdropped
      LEFT JOIN LATERAL cdc_emulator.sqlserver_type(a.atttypid, a.atttypmod, false) st ON a.attnum IS NOT NULL
     WHERE ct.capture_instance = ci),
  k AS (
    SELECT c.*,
           src_col IS NULL OR computed AS never,                                  -- always NULL (section 1.7, 4)
           coalesce(sqltype IN ('text', 'ntext', 'image'), false) AS legacy_lob,  -- NULL in op 1 and op 3
           coalesce(max_length = -1 AND sqltype IN ('nvarchar', 'varchar', 'varbinary', 'xml'), false) AS max_lob
      FROM c)
  SELECT count(*),
         string_agg(format('%I', ct_col), ', ' ORDER BY ord),
         string_agg(CASE WHEN never THEN 'NULL' ELSE format('n.%I', src_col) END, ', ' ORDER BY ord),
         string_agg(CASE WHEN never OR legacy_lob THEN 'NULL' ELSE format('o.%I', src_col) END, ', ' ORDER BY ord),
         string_agg(CASE WHEN never OR legacy_lob THEN 'NULL'
                         WHEN max_lob THEN format('CASE WHEN OLD.%1$I%2$s IS DISTINCT FROM NEW.%1$I%2$s THEN OLD.%1$I END',
                                                  src_col, cmp)
                         ELSE format('OLD.%I', src_col) END, ', ' ORDER BY ord),
         string_agg(CASE WHEN src_col IS NULL THEN 'false'
                         ELSE format('OLD.%1$I%2$s IS DISTINCT FROM NEW.%1$I%2$s', src_col, cmp) END, ', ' ORDER BY ord),
         string_agg(format('t.%I', ct_col), ', ' ORDER BY ord)
    INTO n, cols, vals_new, vals_old, vals_old_before, changed, out_cols
    FROM k;
  fullmask := quote_literal(cdc_emulator.mask(array_fill(true, ARRAY[n]))) || '::bytea';
  IF cardinality(inst.key_columns) > 0 THEN
    SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', k), ' OR ') INTO keychanged
      FROM unnest(inst.key_columns) k;
  ELSE
    keychanged := 'false';
  END IF;
  fn := 'cdc_' || md5(ci);

  -- INSERT (op 2, transition table n) and DELETE (op 1, transition table o): set-based, one template
  FOR kind IN SELECT * FROM (VALUES ('_ins', 'n', 2, vals_new), ('_del', 'o', 1, vals_old)) AS k(suffix, alias, op, vals)
  LOOP
    EXECUTE format('CREATE OR REPLACE FUNCTION cdc_emulator.%I() RETURNS trigger LANGUAGE plpgsql AS %L',
      fn || kind.suffix, format($body$
#variable_conflict use_variable
DECLARE base bigint;
BEGIN
  IF NOT EXISTS (SELECT FROM %1$I) THEN
    RETURN NULL;   -- a statement that changed no row leaves no trace
  END IF;
  PERFORM cdc_emulator.touch(%2$L);
  base := cdc_emulator.reserve_commands((SELECT count(*) FROM %1$I));
  INSERT INTO cdc_emulator.%3$I (__txid, "__$seqval", "__$operation", "__$update_mask", %4$s, "__$command_id")
  SELECT pg_current_xact_id(), cdc_emulator.lsn(nextval('cdc_emulator.change_seq')), %5$s, %6$s, %7$s,
         base + row_number() OVER ()
    FROM %1$I;
  RETURN NULL;
END $body$, kind.alias, ci, inst.pending_name, cols, kind.op, fullmask, kind.vals));
  END LOOP;

  EXECUTE format('CREATE OR REPLACE FUNCTION cdc_emulator.%I() RETURNS trigger LANGUAGE plpgsql AS %L',
    fn || '_upd', format($body$
#variable_conflict use_variable
DECLARE seq bytea; cmd bigint; m bytea;
BEGIN
  PERFORM cdc_emulator.touch(%1$L);
  seq := cdc_emulator.lsn(nextval('cdc_emulator.change_seq'));
  cmd := cdc_emulator.reserve_commands(1) + 1;
  IF %6$s THEN
    -- a change of the row identifier is captured as delete + insert with one seqval (deferred update)
    INSERT INTO cdc_emulator.%2$I (__txid, "__$seqval", "__$operation", "__$update_mask", %3$s, "__$command_id")
    SELECT pg_current_xact_id(), seq, 1, %4$s, %7$s, cmd FROM (SELECT OLD.*) o;
    INSERT INTO cdc_emulator.%2$I (__txid, "__$seqval", "__$operation", "__$update_mask", %3$s, "__$command_id")
    SELECT pg_current_xact_id(), seq, 2, %4$s, %8$s, cmd FROM (SELECT NEW.*) n;
  ELSE
    m := cdc_emulator.mask(ARRAY[%5$s]::boolean[]);
    INSERT INTO cdc_emulator.%2$I (__txid, "__$seqval", "__$operation", "__$update_mask", %3$s, "__$command_id")
    VALUES (pg_current_xact_id(), seq, 3, m, %9$s, cmd);
    INSERT INTO cdc_emulator.%2$I (__txid, "__$seqval", "__$operation", "__$update_mask", %3$s, "__$command_id")
    SELECT pg_current_xact_id(), seq, 4, m, %8$s, cmd FROM (SELECT NEW.*) n;
  END IF;
  RETURN NULL;
END $body$, ci, inst.pending_name, cols, fullmask, changed, keychanged, vals_old, vals_new, vals_old_before));

  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', fn || '_ins', src);
  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', fn || '_del', src);
  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', fn || '_upd', src);
  EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'cdc_no_truncate', src);
  EXECUTE format('CREATE TRIGGER %1$I AFTER INSERT ON %2$s REFERENCING NEW TABLE AS n FOR EACH STATEMENT '
                 'EXECUTE FUNCTION cdc_emulator.%1$I()', fn || '_ins', src);
  EXECUTE format('CREATE TRIGGER %1$I AFTER DELETE ON %2$s REFERENCING OLD TABLE AS o FOR EACH STATEMENT '
                 'EXECUTE FUNCTION cdc_emulator.%1$I()', fn || '_del', src);
  EXECUTE format('CREATE TRIGGER %1$I AFTER UPDATE ON %2$s FOR EACH ROW EXECUTE FUNCTION cdc_emulator.%1$I()',
                 fn || '_upd', src);
  EXECUTE format('CREATE TRIGGER cdc_no_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT '
                 'EXECUTE FUNCTION cdc_emulator.refuse_truncate()', src);

  -- the row type of the table-valued functions: no __$end_lsn and no __$command_id (section 2.2)
  EXECUTE format('DROP TYPE IF EXISTS cdc_emulator.%I CASCADE', ci || '_row');
  EXECUTE format('CREATE TYPE cdc_emulator.%I AS ("__$start_lsn" bytea, "__$seqval" bytea, "__$operation" int, '
                 '"__$update_mask" bytea, %s)', ci || '_row', cdc_emulator.ct_column_defs(ci));
  -- cdc.fn_cdc_get_all_changes_<ci>(from_lsn, to_lsn, row_filter_option)
  EXECUTE format('CREATE OR REPLACE FUNCTION cdc.%I(from_lsn bytea, to_lsn bytea, row_filter_option text) '
                 'RETURNS SETOF cdc_emulator.%I LANGUAGE plpgsql STABLE AS %L',
    'fn_cdc_get_all_changes_' || ci, ci || '_row', format($body$
#variable_conflict use_variable
BEGIN
  PERFORM cdc_emulator.check_range(%1$L, from_lsn, to_lsn, row_filter_option, 'fn_cdc_get_all_changes_',
                                   ARRAY['all', 'all update old']);
  RETURN QUERY SELECT t."__$start_lsn", t."__$seqval", t."__$operation", t."__$update_mask", %2$s
    FROM cdc.%3$I t
   WHERE t."__$start_lsn" >= from_lsn AND t."__$start_lsn" <= to_lsn
     AND (lower(btrim(row_filter_option)) = 'all update old' OR t."__$operation" <> 3);
END $body$, ci, out_cols, inst.ct_name));
  IF net THEN
    PERFORM cdc_emulator.generate_net(ci, out_cols);
  END IF;
END $gen$;

-- Remove one capture instance: its triggers (when the source still exists), generated functions and types,
-- change and pending tables, catalog rows and pending capture work. Used by sp_cdc_disable_table and when
-- the source table is dropped (MS: "change data capture metadata that is associated with the table is
-- automatically removed").
CREATE OR REPLACE FUNCTION cdc_emulator.drop_instance(ci text, source_exists boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE inst cdc_emulator.instances; fn text := 'cdc_' || md5(ci); ct_oid int; suffix text;
BEGIN
  SELECT * INTO inst FROM cdc_emulator.instances WHERE capture_instance = ci;
  IF NOT FOUND THEN RETURN; END IF;
  SELECT object_id INTO ct_oid FROM cdc.change_tables WHERE capture_instance = ci;
  FOREACH suffix IN ARRAY ARRAY['_ins', '_del', '_upd'] LOOP
    IF source_exists THEN
      EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', fn || suffix, inst.source_oid::regclass);
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS cdc_emulator.%I()', fn || suffix);
  END LOOP;
  EXECUTE format('DROP TYPE IF EXISTS cdc_emulator.%I CASCADE', ci || '_row');   -- and the TVFs returning it
  EXECUTE format('DROP TYPE IF EXISTS cdc_emulator.%I CASCADE', ci || '_net');
  EXECUTE format('DROP TABLE IF EXISTS cdc.%I', inst.ct_name);
  EXECUTE format('DROP TABLE IF EXISTS cdc_emulator.%I', inst.pending_name);
  DELETE FROM cdc.captured_columns WHERE object_id = ct_oid;
  DELETE FROM cdc.index_columns WHERE object_id = ct_oid;
  DELETE FROM cdc.ddl_history WHERE object_id = ct_oid;
  DELETE FROM cdc.change_tables WHERE capture_instance = ci;
  DELETE FROM cdc_emulator.tx_touch WHERE capture_instance = ci;
  DELETE FROM cdc_emulator.pending_ddl WHERE capture_instance = ci;
  DELETE FROM cdc_emulator.instances WHERE capture_instance = ci;
  IF NOT EXISTS (SELECT 1 FROM cdc_emulator.instances WHERE source_oid = inst.source_oid) THEN
    IF source_exists THEN
      EXECUTE format('DROP TRIGGER IF EXISTS cdc_no_truncate ON %s', inst.source_oid::regclass);
    END IF;
    DELETE FROM cdc_emulator.source_columns WHERE source_oid = inst.source_oid;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'Msg 4711: Cannot truncate table ''%'' because it is published for replication or enabled for Change Data Capture.', TG_TABLE_NAME
    USING ERRCODE = '55000';
END $$;

-- The 313 error: SQL Server's inline TVFs cannot raise, so a bad range surfaces as this misleading message.
CREATE OR REPLACE FUNCTION cdc_emulator.check_range(ci text, from_lsn bytea, to_lsn bytea, opt text, fname text,
    options text[]) RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE min_lsn bytea := sys.fn_cdc_get_min_lsn(ci); max_lsn bytea := sys.fn_cdc_get_max_lsn();
BEGIN
  IF from_lsn IS NULL OR to_lsn IS NULL OR opt IS NULL OR NOT lower(btrim(opt)) = ANY(options)
     OR max_lsn IS NULL OR from_lsn < min_lsn OR to_lsn > max_lsn OR from_lsn > to_lsn THEN
    RAISE EXCEPTION 'Msg 313, Level 16, State 3: An insufficient number of arguments were supplied for the procedure or function cdc.% ... .', fname
      USING ERRCODE = '22023';
  END IF;
END $$;
