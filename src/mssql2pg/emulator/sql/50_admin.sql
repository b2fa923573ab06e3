-- Net changes, disabling, help procedures, jobs, cleanup, DDL tracking (ALTER TABLE and dropped tables) and the
-- in-place upgrade of instances enabled by an older install.

-- SQL Server's CLR aggregate sys.ORMask: the byte-wise OR of update masks (all masks of one instance have the
-- same length). 'all with mask' reports the OR over a key's changes in the window, not the last mask.
CREATE OR REPLACE FUNCTION cdc_emulator.mask_or(a bytea, b bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE r bytea;
BEGIN
  IF a IS NULL THEN RETURN b; END IF;
  IF b IS NULL OR octet_length(b) <> octet_length(a) THEN RETURN a; END IF;
  r := a;
  FOR i IN 0..octet_length(a) - 1 LOOP
    r := set_byte(r, i, get_byte(a, i) | get_byte(b, i));
  END LOOP;
  RETURN r;
END $$;

CREATE OR REPLACE AGGREGATE cdc_emulator.or_mask(bytea) (SFUNC = cdc_emulator.mask_or, STYPE = bytea);

-- cdc.fn_cdc_get_net_changes_<ci>: one row per key changed in the window, with its final values (section 2.3).
-- The body is built as text and handed over as one quoted literal (see cdc_emulator.generate).
CREATE OR REPLACE FUNCTION cdc_emulator.generate_net(ci text, out_cols text) RETURNS void
LANGUAGE plpgsql AS $gen$
DECLARE inst cdc_emulator.instances; keys text;
BEGIN
  SELECT * INTO inst FROM cdc_emulator.instances WHERE capture_instance = ci;
  SELECT string_agg(format('t.%I', k), ', ') INTO keys FROM unnest(inst.key_columns) k;
  EXECUTE format('DROP TYPE IF EXISTS cdc_emulator.%I CASCADE', ci || '_net');
  EXECUTE format('CREATE TYPE cdc_emulator.%I AS ("__$start_lsn" bytea, "__$operation" int, "__$update_mask" bytea, %s)',
                 ci || '_net', cdc_emulator.ct_column_defs(ci));
  EXECUTE format('CREATE OR REPLACE FUNCTION cdc.%I(from_lsn bytea, to_lsn bytea, row_filter_option text) '
                 'RETURNS SETOF cdc_emulator.%I LANGUAGE plpgsql STABLE AS %L',
    'fn_cdc_get_net_changes_' || ci, ci || '_net', format($body$
#variable_conflict use_variable
DECLARE opt text := lower(btrim(row_filter_option));
BEGIN
  PERFORM cdc_emulator.check_range(%1$L, from_lsn, to_lsn, row_filter_option, 'fn_cdc_get_net_changes_',
                                   ARRAY['all', 'all with mask', 'all with merge']);
  RETURN QUERY
  WITH w AS (
    SELECT t.*, row_number() OVER k_desc AS rn_last, count(*) OVER k_all AS n,
           cdc_emulator.or_mask(t."__$update_mask") OVER k_all AS window_mask,
           first_value(t."__$operation") OVER k_asc AS first_op
      FROM cdc.%2$I t
     WHERE t."__$start_lsn" >= from_lsn AND t."__$start_lsn" <= to_lsn AND t."__$operation" <> 3
    WINDOW k_all AS (PARTITION BY %3$s),
           k_asc AS (PARTITION BY %3$s ORDER BY t."__$start_lsn", t."__$seqval", t."__$operation"),
           k_desc AS (PARTITION BY %3$s ORDER BY t."__$start_lsn" DESC, t."__$seqval" DESC, t."__$operation" DESC)),
  f AS (
    SELECT w.*, CASE
        WHEN w.n = 1 THEN w."__$operation"
        WHEN w.first_op = 2 THEN CASE WHEN w."__$operation" = 1 THEN NULL ELSE 2 END
        WHEN w.first_op = 4 THEN CASE WHEN w."__$operation" = 1 THEN 1 ELSE 4 END
        ELSE CASE WHEN w."__$operation" = 1 THEN 1 ELSE 4 END END AS net_op
      FROM w WHERE w.rn_last = 1)
  SELECT t."__$start_lsn",
         CASE WHEN opt = 'all with merge' THEN CASE WHEN t.net_op = 1 THEN 1 ELSE 5 END ELSE t.net_op END,
         CASE WHEN opt = 'all with mask' AND t.net_op = 4 THEN t.window_mask ELSE NULL END,
         %4$s
    FROM f t WHERE t.net_op IS NOT NULL;
END $body$, ci, inst.ct_name, keys, out_cols));
END $gen$;

CREATE OR REPLACE PROCEDURE sys.sp_cdc_disable_table(source_schema text, source_name text, capture_instance text)
LANGUAGE plpgsql AS $$
DECLARE ci text; src oid;
BEGIN
  PERFORM cdc_emulator.require_cdc_db();
  SELECT c.oid INTO src FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = source_schema AND c.relname = source_name;
  IF src IS NULL THEN
    RAISE EXCEPTION 'Msg 22830: Source table ''%.%'' does not exist in the current database.', source_schema, source_name
      USING ERRCODE = '42P01';
  END IF;
  IF lower(capture_instance) <> 'all' AND NOT EXISTS (SELECT 1 FROM cdc_emulator.instances i
      WHERE i.capture_instance = sp_cdc_disable_table.capture_instance AND i.source_oid = src) THEN
    RAISE EXCEPTION 'Msg 22904: Could not disable change data capture: capture instance ''%'' does not exist for table ''%.%''.',
      capture_instance, source_schema, source_name USING ERRCODE = '42704';
  END IF;
  FOR ci IN SELECT i.capture_instance FROM cdc_emulator.instances i
             WHERE i.source_oid = src AND (lower(sp_cdc_disable_table.capture_instance) = 'all'
                                          OR i.capture_instance = sp_cdc_disable_table.capture_instance) LOOP
    PERFORM cdc_emulator.drop_instance(ci, true);
  END LOOP;
END $$;

-- IS_MEMBER(role): 1 when the current user is in the database role, 0 when not, NULL when no such role. SQL
-- Server's db_owner (who may enable and disable capture instances) is, here, a superuser, the database's owner,
-- or a member of a PostgreSQL role named db_owner; any other name is a PostgreSQL role.
CREATE OR REPLACE FUNCTION sys.is_member(role text) RETURNS int
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF lower(role) = 'db_owner' THEN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       OR pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER')
       OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'db_owner') AND pg_has_role(current_user, 'db_owner', 'MEMBER'))
    THEN
      RETURN 1;
    END IF;
    RETURN 0;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
    RETURN NULL;
  END IF;
  RETURN pg_has_role(current_user, role, 'MEMBER')::int;
END $$;

DROP TYPE IF EXISTS cdc_emulator.help_cdc_row CASCADE;
CREATE TYPE cdc_emulator.help_cdc_row AS (source_schema text, source_table text, capture_instance text, object_id int, source_object_id int,
               start_lsn bytea, end_lsn bytea, supports_net_changes boolean, has_drop_pending boolean,
               role_name text, index_name text, filegroup_name text, create_date timestamp(3),
               index_column_list text, captured_column_list text);

CREATE OR REPLACE FUNCTION sys.sp_cdc_help_change_data_capture(source_schema text DEFAULT NULL, source_name text DEFAULT NULL)
RETURNS SETOF cdc_emulator.help_cdc_row
LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM cdc_emulator.require_cdc_db();
  RETURN QUERY
  SELECT n.nspname::text, c.relname::text, ct.capture_instance, ct.object_id, ct.source_object_id, ct.start_lsn,
         ct.end_lsn, ct.supports_net_changes, ct.has_drop_pending, ct.role_name, ct.index_name, ct.filegroup_name,
         ct.create_date,
         (SELECT string_agg(quote_ident(ic.column_name), ', ' ORDER BY ic.index_ordinal) FROM cdc.index_columns ic
           WHERE ic.object_id = ct.object_id),
         (SELECT string_agg(quote_ident(cc.column_name), ', ' ORDER BY cc.column_ordinal) FROM cdc.captured_columns cc
           WHERE cc.object_id = ct.object_id)
    FROM cdc.change_tables ct JOIN pg_class c ON c.oid = ct.source_object_id::oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE (sp_cdc_help_change_data_capture.source_schema IS NULL OR n.nspname = sp_cdc_help_change_data_capture.source_schema)
     AND (sp_cdc_help_change_data_capture.source_name IS NULL OR c.relname = sp_cdc_help_change_data_capture.source_name)
   ORDER BY 1, 2, ct.create_date;
END $$;

DROP TYPE IF EXISTS cdc_emulator.captured_column_row CASCADE;
CREATE TYPE cdc_emulator.captured_column_row AS (source_schema text, source_table text, capture_instance text, column_name text, column_id int,
               column_ordinal int, data_type text, character_maximum_length int, numeric_precision int,
               numeric_precision_radix int, numeric_scale int, datetime_precision int);

CREATE OR REPLACE FUNCTION sys.sp_cdc_get_captured_columns(capture_instance text)
RETURNS SETOF cdc_emulator.captured_column_row
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM cdc.change_tables ct WHERE ct.capture_instance = sp_cdc_get_captured_columns.capture_instance) THEN
    RAISE EXCEPTION 'Msg 22981: Object does not exist or access is denied.' USING ERRCODE = '42704';
  END IF;
  RETURN QUERY
  SELECT n.nspname::text, c.relname::text, ct.capture_instance, cc.column_name, cc.column_id, cc.column_ordinal,
         cc.column_type,
         CASE WHEN cc.column_type IN ('nvarchar', 'nchar') THEN CASE WHEN sc.max_length = -1 THEN -1 ELSE sc.max_length / 2 END
              WHEN cc.column_type IN ('varchar', 'char', 'varbinary', 'binary') THEN sc.max_length END,
         CASE WHEN cc.column_type IN ('decimal', 'numeric', 'money', 'smallmoney', 'tinyint', 'smallint', 'int', 'bigint',
                                      'float', 'real') THEN sc."precision" END,
         CASE WHEN cc.column_type IN ('decimal', 'numeric', 'money', 'smallmoney', 'tinyint', 'smallint', 'int', 'bigint')
              THEN 10 WHEN cc.column_type IN ('float', 'real') THEN 2 END,
         CASE WHEN cc.column_type IN ('decimal', 'numeric', 'money', 'smallmoney', 'tinyint', 'smallint', 'int', 'bigint')
              THEN sc.scale END,
         CASE WHEN cc.column_type IN ('time', 'datetime2', 'datetimeoffset', 'datetime', 'smalldatetime', 'date')
              THEN sc.scale END
    FROM cdc.change_tables ct
    JOIN cdc.captured_columns cc ON cc.object_id = ct.object_id
    JOIN pg_class c ON c.oid = ct.source_object_id::oid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN sys.columns sc ON sc.object_id = ct.source_object_id AND sc.column_id = cc.column_id
   WHERE ct.capture_instance = sp_cdc_get_captured_columns.capture_instance
   ORDER BY cc.column_ordinal;
END $$;

DROP TYPE IF EXISTS cdc_emulator.ddl_history_row CASCADE;
CREATE TYPE cdc_emulator.ddl_history_row AS (source_schema text, source_table text, capture_instance text, required_column_update boolean,
               ddl_command text, ddl_lsn bytea, ddl_time timestamp(3));

CREATE OR REPLACE FUNCTION sys.sp_cdc_get_ddl_history(capture_instance text)
RETURNS SETOF cdc_emulator.ddl_history_row
LANGUAGE sql STABLE AS $$
  SELECT n.nspname::text, c.relname::text, ct.capture_instance, h.required_column_update, h.ddl_command, h.ddl_lsn,
         h.ddl_time
    FROM cdc.ddl_history h JOIN cdc.change_tables ct ON ct.object_id = h.object_id
    JOIN pg_class c ON c.oid = ct.source_object_id::oid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE ct.capture_instance = sp_cdc_get_ddl_history.capture_instance
   ORDER BY h.ddl_lsn
$$;

DROP TYPE IF EXISTS cdc_emulator.help_jobs_row CASCADE;
CREATE TYPE cdc_emulator.help_jobs_row AS (job_id uuid, job_type text, job_name text, maxtrans int, maxscans int, continuous boolean,
               pollinginterval bigint, retention bigint, threshold bigint);

CREATE OR REPLACE FUNCTION sys.sp_cdc_help_jobs()
RETURNS SETOF cdc_emulator.help_jobs_row
LANGUAGE sql STABLE AS $$
  SELECT md5(current_database() || j.job_type)::uuid, j.job_type, format('cdc.%s_%s', current_database(), j.job_type),
         j.maxtrans, j.maxscans, j.continuous, j.pollinginterval, j.retention, j.threshold
    FROM cdc_emulator.cdc_jobs j ORDER BY j.job_type
$$;

CREATE OR REPLACE PROCEDURE sys.sp_cdc_change_job(job_type text DEFAULT 'capture', maxtrans int DEFAULT NULL,
    maxscans int DEFAULT NULL, continuous boolean DEFAULT NULL, pollinginterval bigint DEFAULT NULL,
    retention bigint DEFAULT NULL, threshold bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE jt text := lower(btrim(job_type));
BEGIN
  IF jt NOT IN ('capture', 'cleanup') THEN
    RAISE EXCEPTION 'Msg 22992: The specified job type ''%'' is not valid. Specify ''capture'' or ''cleanup''.', job_type
      USING ERRCODE = '22023';
  END IF;
  IF jt = 'capture' AND (retention IS NOT NULL OR threshold IS NOT NULL) THEN
    RAISE EXCEPTION 'Msg 22995: Retention and threshold can only be set for the cleanup job.' USING ERRCODE = '22023';
  END IF;
  IF jt = 'cleanup' AND (maxtrans IS NOT NULL OR maxscans IS NOT NULL OR continuous IS NOT NULL OR pollinginterval IS NOT NULL) THEN
    RAISE EXCEPTION 'Msg 22996: maxtrans, maxscans, continuous and pollinginterval can only be set for the capture job.'
      USING ERRCODE = '22023';
  END IF;
  IF maxtrans IS NOT NULL AND maxtrans <= 0 OR maxscans IS NOT NULL AND maxscans <= 0 THEN
    RAISE EXCEPTION 'Msg 22994: maxtrans and maxscans must be greater than 0.' USING ERRCODE = '22023';
  END IF;
  IF pollinginterval IS NOT NULL AND (pollinginterval < 0 OR pollinginterval >= 86400) THEN
    RAISE EXCEPTION 'Msg 22998: pollinginterval must be between 0 and 86399 seconds.' USING ERRCODE = '22023';
  END IF;
  IF retention IS NOT NULL AND (retention <= 0 OR retention > 52594800) THEN
    RAISE EXCEPTION 'Msg 22993: retention must be between 1 and 52594800 minutes.' USING ERRCODE = '22023';
  END IF;
  UPDATE cdc_emulator.cdc_jobs j SET
    maxtrans = coalesce(sp_cdc_change_job.maxtrans, j.maxtrans),
    maxscans = coalesce(sp_cdc_change_job.maxscans, j.maxscans),
    continuous = coalesce(sp_cdc_change_job.continuous, CASE WHEN sp_cdc_change_job.pollinginterval > 0 THEN true END, j.continuous),
    pollinginterval = CASE WHEN sp_cdc_change_job.continuous = false THEN 0
                           ELSE coalesce(sp_cdc_change_job.pollinginterval, j.pollinginterval) END,
    retention = coalesce(sp_cdc_change_job.retention, j.retention),
    threshold = coalesce(sp_cdc_change_job.threshold, j.threshold)
   WHERE j.job_type = jt;
END $$;

-- Manual cleanup: raise the instance's low water mark and delete change rows below it (section 5).
CREATE OR REPLACE PROCEDURE sys.sp_cdc_cleanup_change_table(capture_instance text, low_water_mark bytea,
    threshold bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE inst cdc_emulator.instances;
BEGIN
  SELECT * INTO inst FROM cdc_emulator.instances i WHERE i.capture_instance = sp_cdc_cleanup_change_table.capture_instance;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Msg 22964: LSN %, specified as the new low endpoint for the change table associated with capture instance ''%'', is not within the Change Data Capture timeline.', low_water_mark, capture_instance
      USING ERRCODE = '22023';
  END IF;
  IF low_water_mark IS NULL OR low_water_mark > coalesce(sys.fn_cdc_get_max_lsn(), '\x00'::bytea) THEN
    RAISE EXCEPTION 'Msg 22964: LSN %, specified as the new low endpoint for the change table associated with capture instance ''%'', is not within the Change Data Capture timeline.', low_water_mark, capture_instance
      USING ERRCODE = '22023';
  END IF;
  -- only a start_lsn below the new low water mark moves (MS about-CDC); a not yet recognised (NULL) one stays
  UPDATE cdc.change_tables ct SET start_lsn = low_water_mark
   WHERE ct.capture_instance = inst.capture_instance AND ct.start_lsn < low_water_mark;
  EXECUTE format('DELETE FROM cdc.%I WHERE "__$start_lsn" < $1', inst.ct_name) USING low_water_mark;
END $$;

-- The cleanup job: low water mark = the smallest LSN committed at or after max(tran_end_time) - retention;
-- raises every instance's start_lsn, then deletes older change rows and lsn_time_mapping rows.
CREATE OR REPLACE PROCEDURE sys.sp_MScdc_cleanup_job()
LANGUAGE plpgsql AS $$
DECLARE keep_from timestamp; lwm bytea; inst cdc_emulator.instances;
BEGIN
  SELECT max(tran_end_time) - make_interval(mins => (SELECT retention FROM cdc_emulator.cdc_jobs WHERE job_type = 'cleanup')::int)
    INTO keep_from FROM cdc.lsn_time_mapping;
  IF keep_from IS NULL THEN RETURN; END IF;
  lwm := sys.fn_cdc_map_time_to_lsn('smallest greater than or equal', keep_from);
  IF lwm IS NULL THEN RETURN; END IF;
  UPDATE cdc.change_tables SET start_lsn = lwm WHERE start_lsn < lwm;   -- NULL (not yet recognised) stays NULL
  FOR inst IN SELECT * FROM cdc_emulator.instances LOOP
    EXECUTE format('DELETE FROM cdc.%I WHERE "__$start_lsn" < $1', inst.ct_name) USING lwm;
  END LOOP;
  DELETE FROM cdc.lsn_time_mapping WHERE start_lsn < lwm;
END $$;

-- DDL on captured tables (section 4; MS about-CDC "Handling changes to source tables"). After each ALTER TABLE of
-- a source table its columns are compared, by column id, with the shape last seen (cdc_emulator.source_columns):
-- * renaming a captured column is refused (Debezium's SQL Server docs: SQL Server does not allow it; the Msg
--   4928 number and text are UNCONFIRMED);
-- * changing the type of a row-identifying (key) column is refused, as SQL Server refuses ALTER COLUMN on a
--   column its key index depends on (Msg 5074 / 4922; MS: the key cannot change while CDC is enabled);
-- * any other column change (added, dropped, retyped, an uncaptured column renamed, NULL <-> NOT NULL) is one
--   ddl_history row per instance, queued until capture publishes the transaction (ddl_lsn = its commit LSN); a
--   captured column's type change alters the change-table column (required_column_update = 1) and its
--   captured_columns.column_type;
-- * other DDL (constraints, defaults, indexes, renaming the table) changes no column and writes nothing.
CREATE OR REPLACE FUNCTION cdc_emulator.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE src oid; ch record; inst cdc_emulator.instances; col record; retyped boolean; ct_type text; changes int;
        key_index text;
BEGIN
  FOR src IN SELECT DISTINCT d.objid FROM pg_event_trigger_ddl_commands() d
              WHERE d.command_tag = 'ALTER TABLE' AND d.objid IN (SELECT source_oid FROM cdc_emulator.instances) LOOP
    changes := 0;
    FOR ch IN
      SELECT coalesce(o.attnum, c.attnum) AS attnum, o.name AS old_name, c.name AS new_name,
             o.typid AS old_typ, o.typmod AS old_mod, c.typid AS new_typ, c.typmod AS new_mod
        FROM (SELECT * FROM cdc_emulator.source_columns s WHERE s.source_oid = src) o
        FULL JOIN (SELECT a.attnum::int AS attnum, a.attname::text AS name, a.atttypid AS typid,
                          a.atttypmod AS typmod, a.attnotnull AS not_null
                     FROM pg_attribute a WHERE a.attrelid = src AND a.attnum > 0 AND NOT a.attisdropped) c
          ON c.attnum = o.attnum
       WHERE (o.name, o.typid, o.typmod, o.not_null) IS DISTINCT FROM (c.name, c.typid, c.typmod, c.not_null)
    LOOP
      changes := changes + 1;
      IF ch.old_name <> ch.new_name AND EXISTS (
          SELECT 1 FROM cdc.captured_columns cc JOIN cdc.change_tables ct ON ct.object_id = cc.object_id
           WHERE ct.source_object_id = src::int AND cc.column_id = ch.attnum) THEN
        RAISE EXCEPTION 'Msg 4928: Cannot alter column ''%'' because it is ''enabled for Change Data Capture''.',
          ch.old_name USING ERRCODE = '55000',
          HINT = 'disable the capture instances that capture the column, rename it, then enable them again';
      END IF;
      IF (ch.old_typ, ch.old_mod) IS DISTINCT FROM (ch.new_typ, ch.new_mod) AND ch.new_typ IS NOT NULL THEN
        SELECT ct.index_name INTO key_index
          FROM cdc.index_columns ic JOIN cdc.change_tables ct ON ct.object_id = ic.object_id
         WHERE ct.source_object_id = src::int AND ic.column_id = ch.attnum LIMIT 1;
        IF FOUND THEN
          RAISE EXCEPTION 'Msg 5074: The object ''%'' is dependent on column ''%''. Msg 4922: ALTER TABLE ALTER COLUMN % failed because one or more objects access this column.',
            key_index, ch.new_name, ch.new_name USING ERRCODE = '55000',
            HINT = 'change data capture identifies rows by this column; disable the capture instances first';
        END IF;
      END IF;
    END LOOP;
    CONTINUE WHEN changes = 0;
    FOR inst IN SELECT * FROM cdc_emulator.instances i WHERE i.source_oid = src ORDER BY i.capture_instance LOOP
      retyped := false;
      FOR col IN
        SELECT cc.column_name, cc.object_id, a.atttypid, a.atttypmod
          FROM cdc.change_tables ct JOIN cdc.captured_columns cc ON cc.object_id = ct.object_id
          JOIN cdc_emulator.source_columns o ON o.source_oid = src AND o.attnum = cc.column_id
          JOIN pg_attribute a ON a.attrelid = src AND a.attnum = cc.column_id AND NOT a.attisdropped
         WHERE ct.capture_instance = inst.capture_instance
           AND (a.atttypid, a.atttypmod) IS DISTINCT FROM (o.typid, o.typmod)
      LOOP
        retyped := true;
        ct_type := CASE WHEN (cdc_emulator.sqlserver_type(col.atttypid, col.atttypmod)).name = 'timestamp' THEN 'bytea'
                        ELSE format_type(col.atttypid, col.atttypmod) END;   -- rowversion is binary(8) in _CT
        BEGIN
          -- SQL Server converts the captured values when capture alters the column: an explicit cast here
          EXECUTE format('ALTER TABLE cdc.%1$I ALTER COLUMN %2$I TYPE %3$s USING %2$I::%3$s',
                         inst.ct_name, col.column_name, ct_type);
          EXECUTE format('ALTER TABLE cdc_emulator.%1$I ALTER COLUMN %2$I TYPE %3$s USING %2$I::%3$s',
                         inst.pending_name, col.column_name, ct_type);
        EXCEPTION WHEN OTHERS THEN
          RAISE EXCEPTION 'the change table of capture instance ''%'' cannot convert its captured column ''%'' to %: %',
            inst.capture_instance, col.column_name, ct_type, SQLERRM USING ERRCODE = SQLSTATE,
            HINT = 'SQL Server would fail later, in its capture job; as MS advises for shrinking a type, update the '
                   'values in the source and in the change table first';
        END;
        UPDATE cdc.captured_columns cc SET column_type = (cdc_emulator.sqlserver_type(col.atttypid, col.atttypmod)).name
         WHERE cc.object_id = col.object_id AND cc.column_name = col.column_name;
      END LOOP;
      INSERT INTO cdc_emulator.pending_ddl (txid, capture_instance, source_object_id, object_id, required_column_update,
                                            ddl_command, ddl_time)
        SELECT pg_current_xact_id(), inst.capture_instance, src::int, ct.object_id, retyped, current_query(),
               localtimestamp(3)
          FROM cdc.change_tables ct WHERE ct.capture_instance = inst.capture_instance;
      PERFORM cdc_emulator.generate(inst.capture_instance);
    END LOOP;
    PERFORM cdc_emulator.snapshot_columns(src);
  END LOOP;
END $$;

DROP EVENT TRIGGER IF EXISTS cdc_emulator_ddl;
CREATE EVENT TRIGGER cdc_emulator_ddl ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
  EXECUTE FUNCTION cdc_emulator.on_ddl();

-- Objects dropped (DROP TABLE, DROP SCHEMA ... CASCADE, ALTER TABLE ... DROP CONSTRAINT, DROP INDEX):
-- * a dropped source table loses its capture instances (MS "Enable and disable change data capture": "If a
--   change data capture-enabled table is dropped, change data capture metadata that is associated with the
--   table is automatically removed"); changes not yet captured go with them;
-- * the index that identifies rows of a table that stays cannot be dropped (MS: the key cannot change while
--   CDC is enabled; SQL Server's error number for it is UNCONFIRMED).
CREATE OR REPLACE FUNCTION cdc_emulator.on_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE tables oid[]; ix record; ci text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM cdc_emulator.instances) THEN
    RETURN;
  END IF;
  SELECT coalesce(array_agg(d.objid), '{}') INTO tables FROM pg_event_trigger_dropped_objects() d
   WHERE d.object_type = 'table';
  FOR ix IN SELECT i.capture_instance, d.object_identity
              FROM pg_event_trigger_dropped_objects() d JOIN cdc_emulator.instances i ON i.key_index = d.objid
             WHERE d.object_type = 'index' AND NOT i.source_oid = ANY(tables) LOOP
    RAISE EXCEPTION 'Index % identifies the rows of capture instance ''%'' and cannot be dropped while change data capture is enabled for the table.',
      ix.object_identity, ix.capture_instance USING ERRCODE = '55000',
      HINT = 'disable the capture instances of the table first (sys.sp_cdc_disable_table)';
  END LOOP;
  FOR ci IN SELECT i.capture_instance FROM cdc_emulator.instances i WHERE i.source_oid = ANY(tables) ORDER BY 1 LOOP
    PERFORM cdc_emulator.drop_instance(ci, false);
  END LOOP;
END $$;

DROP EVENT TRIGGER IF EXISTS cdc_emulator_drop;
CREATE EVENT TRIGGER cdc_emulator_drop ON sql_drop EXECUTE FUNCTION cdc_emulator.on_drop();

-- In-place upgrade of instances enabled by an older install: the enable LSN, the key index, DDL tracking's
-- column snapshot, and generated code in the current form (columns by id, bodies as quoted literals).
DO $$
DECLARE ci text; src oid;
BEGIN
  IF EXISTS (SELECT 1 FROM cdc_emulator.instances WHERE enable_lsn IS NULL) THEN
    PERFORM cdc_emulator.capture_lock();
    UPDATE cdc_emulator.instances SET enable_lsn = cdc_emulator.next_commit_lsn() WHERE enable_lsn IS NULL;
  END IF;
  UPDATE cdc_emulator.instances i SET key_index = (
      SELECT x.indexrelid FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
        JOIN cdc.change_tables ct ON ct.capture_instance = i.capture_instance
       WHERE x.indrelid = i.source_oid AND ic.relname = ct.index_name)
   WHERE i.key_index IS NULL;
  FOR src IN SELECT DISTINCT i.source_oid FROM cdc_emulator.instances i
              WHERE NOT EXISTS (SELECT 1 FROM cdc_emulator.source_columns s WHERE s.source_oid = i.source_oid) LOOP
    PERFORM cdc_emulator.snapshot_columns(src);
  END LOOP;
  FOR ci IN SELECT capture_instance FROM cdc_emulator.instances ORDER BY 1 LOOP
    PERFORM cdc_emulator.generate(ci);
  END LOOP;
END $$;

-- As in SQL Server, the catalog views and the sys functions are public: any login may read the metadata and
-- call sys.fn_cdc_get_max_lsn(); reading the CDC data itself needs SELECT on schema cdc (granted per login,
-- the minimum in docs/security.md). The emulator's own bookkeeping (cdc_emulator) stays private.
GRANT USAGE ON SCHEMA sys TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA sys TO PUBLIC;
-- The sys views map types through cdc_emulator.sqlserver_type(), which runs as the caller and reads the static
-- type table; USAGE on the schema lets it be found, every other table there still refuses the caller.
GRANT USAGE ON SCHEMA cdc_emulator TO PUBLIC;
GRANT SELECT ON cdc_emulator.type_ids TO PUBLIC;
