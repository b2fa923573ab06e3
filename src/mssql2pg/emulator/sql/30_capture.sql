-- Capture: triggers on each captured table record changes in a per-instance pending table; at commit a
-- deferred constraint trigger assigns the commit LSN while holding the capture lock (held until the writing
-- transaction has committed, so the next committer waits: commit order = LSN order, and an LSN is visible
-- only together with all rows of its transaction). A transaction that altered a captured table gets its commit
-- LSN the same way (for its cdc.ddl_history rows). Immediate mode publishes into cdc.<ci>_CT at commit; agent
-- mode leaves the transaction pending until sys.sp_cdc_scan() publishes it.

CREATE OR REPLACE FUNCTION cdc_emulator.capture_lock() RETURNS void LANGUAGE sql AS
$$ SELECT pg_advisory_xact_lock(715517, 1) $$;

CREATE OR REPLACE FUNCTION cdc_emulator.setting(name text) RETURNS text LANGUAGE sql STABLE AS
$$ SELECT value FROM cdc_emulator.settings WHERE key = name $$;

-- The source's clock: PostgreSQL's, shifted by the setting 'clock_offset' (an interval; absent = 0), so that a
-- test can run a source whose clock is skewed (issue 17 point 3). Commit times (cdc.lsn_time_mapping) and
-- sys.sysdatetimeoffset(), the emulator's SYSDATETIMEOFFSET(), both follow it, as on a real server.
CREATE OR REPLACE FUNCTION cdc_emulator.clock_offset() RETURNS interval LANGUAGE sql STABLE AS
$$ SELECT coalesce((SELECT value::interval FROM cdc_emulator.settings WHERE key = 'clock_offset'), interval '0') $$;

CREATE OR REPLACE FUNCTION sys.sysdatetimeoffset() RETURNS timestamptz LANGUAGE sql VOLATILE AS
$$ SELECT clock_timestamp() + cdc_emulator.clock_offset() $$;

-- command_id: counts the operations of one source transaction (an update pair shares one).
CREATE OR REPLACE FUNCTION cdc_emulator.reserve_commands(n bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE base bigint := coalesce(nullif(current_setting('cdc_emulator.command_id', true), '')::bigint, 0);
BEGIN
  PERFORM set_config('cdc_emulator.command_id', (base + n)::text, true);
  RETURN base;
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.touch(ci text) RETURNS void LANGUAGE sql AS $$
  INSERT INTO cdc_emulator.tx_touch VALUES (pg_current_xact_id(), ci) ON CONFLICT DO NOTHING
$$;

-- The captured columns of an instance, quoted, in column_ordinal order, each after ``prefix``.
CREATE OR REPLACE FUNCTION cdc_emulator.column_list(ci text, prefix text DEFAULT '') RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT string_agg(prefix || quote_ident(cc.column_name), ', ' ORDER BY cc.column_ordinal)
    FROM cdc.captured_columns cc JOIN cdc.change_tables ct ON ct.object_id = cc.object_id
   WHERE ct.capture_instance = ci
$$;

-- "name type, ..." of an instance's captured columns as its change table holds them (for the TVF row types).
CREATE OR REPLACE FUNCTION cdc_emulator.ct_column_defs(ci text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY cc.column_ordinal)
    FROM cdc.captured_columns cc JOIN cdc.change_tables ct ON ct.object_id = cc.object_id
    JOIN pg_attribute a ON a.attrelid = ct.object_id AND a.attname = cc.column_name
   WHERE ct.capture_instance = ci
$$;

-- Move the pending rows of some transactions of one instance into its change table, each with its commit LSN.
CREATE OR REPLACE FUNCTION cdc_emulator.publish(ci text, txids xid8[], lsns bytea[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE inst cdc_emulator.instances; moved bigint;
BEGIN
  SELECT * INTO inst FROM cdc_emulator.instances WHERE capture_instance = ci;
  IF NOT FOUND THEN RETURN 0; END IF;   -- instance disabled meanwhile: its changes go with it
  EXECUTE format(
    'WITH m AS (DELETE FROM cdc_emulator.%1$I p WHERE p.__txid = ANY($1) RETURNING *),
          l AS (SELECT * FROM unnest($1, $2) AS l(txid, lsn))
     INSERT INTO cdc.%2$I ("__$start_lsn", "__$end_lsn", "__$seqval", "__$operation", "__$update_mask", %3$s, "__$command_id")
     SELECT l.lsn, NULL, m."__$seqval", m."__$operation", m."__$update_mask", %4$s, m."__$command_id"
       FROM m JOIN l ON l.txid = m.__txid ORDER BY l.lsn, m.__ord',
    inst.pending_name, inst.ct_name, cdc_emulator.column_list(ci), cdc_emulator.column_list(ci, 'm.'))
  USING txids, lsns;
  GET DIAGNOSTICS moved = ROW_COUNT;
  RETURN moved;
END $$;

-- The capture step for committed transactions (called with the capture lock held; arrays in commit-LSN order):
-- their change rows into the change tables, their DDL into cdc.ddl_history, one cdc.lsn_time_mapping row each.
-- A transaction without change rows (only DDL on captured tables, or changes of an instance dropped since) gets
-- an idle-marker row (tran_id 0x00, section 1.5), so fn_cdc_get_max_lsn() still reaches its LSN.
CREATE OR REPLACE FUNCTION cdc_emulator.capture(txids xid8[], lsns bytea[], begin_times timestamp[],
    end_times timestamp[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE ci text; with_rows xid8[];
BEGIN
  -- a transaction has change rows exactly when it touched an instance (statements that change no row do not)
  SELECT coalesce(array_agg(DISTINCT txid), '{}') INTO with_rows FROM cdc_emulator.tx_touch WHERE txid = ANY(txids);
  FOR ci IN SELECT DISTINCT capture_instance FROM cdc_emulator.tx_touch WHERE txid = ANY(txids) ORDER BY 1 LOOP
    PERFORM cdc_emulator.publish(ci, txids, lsns);
  END LOOP;
  DELETE FROM cdc_emulator.tx_touch WHERE txid = ANY(txids);
  IF EXISTS (SELECT 1 FROM cdc_emulator.pending_ddl WHERE txid = ANY(txids)) THEN
    INSERT INTO cdc.ddl_history (source_object_id, object_id, required_column_update, ddl_command, ddl_lsn, ddl_time)
      SELECT d.source_object_id, d.object_id, d.required_column_update, d.ddl_command, l.lsn, d.ddl_time
        FROM cdc_emulator.pending_ddl d JOIN unnest(txids, lsns) AS l(txid, lsn) ON l.txid = d.txid
       ORDER BY l.lsn, d.ord;
    DELETE FROM cdc_emulator.pending_ddl WHERE txid = ANY(txids);
  END IF;
  INSERT INTO cdc.lsn_time_mapping
    SELECT l.lsn, l.begin_time, l.end_time,
           CASE WHEN l.txid = ANY(with_rows)
                THEN substring(int8send(l.txid::text::bigint) FROM 1 FOR 8) || '\x0000'::bytea
                ELSE '\x00'::bytea END,
           NULL
      FROM unnest(txids, lsns, begin_times, end_times) AS l(txid, lsn, begin_time, end_time);
END $$;

-- MS about-CDC "validity interval of the capture instance": it starts when capture recognises the instance. An
-- instance's start_lsn is its enable LSN, set by a scan once no transaction committed before the enable is
-- pending (immediate mode sets it at enable time: nothing is ever pending there).
CREATE OR REPLACE FUNCTION cdc_emulator.recognise_instances() RETURNS void
LANGUAGE sql AS $$
  UPDATE cdc.change_tables ct SET start_lsn = i.enable_lsn
    FROM cdc_emulator.instances i
   WHERE i.capture_instance = ct.capture_instance AND ct.start_lsn IS NULL AND i.enable_lsn IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM cdc_emulator.pending_tx p WHERE p.commit_lsn < i.enable_lsn)
$$;

-- At COMMIT of a transaction that changed a captured table or altered one: its commit LSN, allocated under the
-- capture lock (held until the commit is done, so commit order = LSN order). Immediate mode captures it now;
-- agent mode leaves it pending for the next scan.
CREATE OR REPLACE FUNCTION cdc_emulator.on_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE me xid8 := pg_current_xact_id(); commit_lsn bytea;
BEGIN
  IF current_setting('cdc_emulator.committed', true) = me::text THEN
    RETURN NULL;   -- one firing per transaction; the first one did the work
  END IF;
  PERFORM set_config('cdc_emulator.committed', me::text, true);
  PERFORM cdc_emulator.capture_lock();
  commit_lsn := cdc_emulator.next_commit_lsn();
  IF cdc_emulator.setting('capture_mode') = 'agent' THEN
    INSERT INTO cdc_emulator.pending_tx
      VALUES (me, commit_lsn, now() + cdc_emulator.clock_offset(), clock_timestamp() + cdc_emulator.clock_offset());
  ELSE
    PERFORM cdc_emulator.capture(ARRAY[me], ARRAY[commit_lsn], ARRAY[(now() + cdc_emulator.clock_offset())::timestamp],
                                 ARRAY[(clock_timestamp() + cdc_emulator.clock_offset())::timestamp]);
  END IF;
  RETURN NULL;
END $$;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'cdc_emulator_commit'
                  AND tgrelid = 'cdc_emulator.tx_touch'::regclass) THEN
    CREATE CONSTRAINT TRIGGER cdc_emulator_commit AFTER INSERT ON cdc_emulator.tx_touch
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdc_emulator.on_commit();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'cdc_emulator_commit'
                  AND tgrelid = 'cdc_emulator.pending_ddl'::regclass) THEN
    CREATE CONSTRAINT TRIGGER cdc_emulator_commit AFTER INSERT ON cdc_emulator.pending_ddl
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdc_emulator.on_commit();
  END IF;
END $$;

-- One capture scan cycle (agent mode): capture committed transactions in commit-LSN order, at most maxtrans,
-- in the caller's transaction. An idle scan still recognises newly enabled instances.
CREATE OR REPLACE FUNCTION cdc_emulator.scan_once(maxtrans int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE txids xid8[]; lsns bytea[]; begin_times timestamp[]; end_times timestamp[];
BEGIN
  PERFORM cdc_emulator.capture_lock();
  SELECT array_agg(txid ORDER BY commit_lsn), array_agg(commit_lsn ORDER BY commit_lsn),
         array_agg(tran_begin_time ORDER BY commit_lsn), array_agg(tran_end_time ORDER BY commit_lsn)
    INTO txids, lsns, begin_times, end_times
    FROM (SELECT * FROM cdc_emulator.pending_tx ORDER BY commit_lsn LIMIT maxtrans) p;
  IF txids IS NOT NULL THEN
    PERFORM cdc_emulator.capture(txids, lsns, begin_times, end_times);
    DELETE FROM cdc_emulator.pending_tx WHERE txid = ANY(txids);
  END IF;
  PERFORM cdc_emulator.recognise_instances();   -- an idle scan recognises new instances too
  RETURN coalesce(array_length(txids, 1), 0);
END $$;

CREATE OR REPLACE PROCEDURE sys.sp_cdc_scan(maxtrans int DEFAULT NULL, maxscans int DEFAULT NULL,
    continuous boolean DEFAULT false, pollinginterval bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE mt int; ms int; done int;
BEGIN
  SELECT coalesce(sp_cdc_scan.maxtrans, j.maxtrans), coalesce(sp_cdc_scan.maxscans, j.maxscans) INTO mt, ms
    FROM cdc_emulator.cdc_jobs j WHERE job_type = 'capture';
  FOR i IN 1..ms LOOP
    done := cdc_emulator.scan_once(mt);
    EXIT WHEN done < mt;
  END LOOP;
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.scan(maxtrans int DEFAULT 500) RETURNS int
LANGUAGE sql AS $$ SELECT cdc_emulator.scan_once(maxtrans) $$;

-- Immediate or agent capture. Switching to immediate first publishes what is pending, so LSN order holds.
CREATE OR REPLACE PROCEDURE cdc_emulator.set_capture_mode(mode text)
LANGUAGE plpgsql AS $$
BEGIN
  IF mode NOT IN ('immediate', 'agent') THEN
    RAISE EXCEPTION 'capture mode must be ''immediate'' or ''agent'', got %', mode USING ERRCODE = '22023';
  END IF;
  PERFORM cdc_emulator.capture_lock();
  IF mode = 'immediate' THEN
    WHILE cdc_emulator.scan_once(100000) > 0 LOOP END LOOP;
  END IF;
  UPDATE cdc_emulator.settings SET value = mode WHERE key = 'capture_mode';
END $$;
