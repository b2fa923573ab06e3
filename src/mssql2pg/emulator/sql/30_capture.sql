-- Capture: triggers on each captured table record changes in a per-instance pending table; at commit a
-- deferred constraint trigger assigns the commit LSN while holding the capture lock (held until the writing
-- transaction has committed, so the next committer waits: commit order = LSN order, and an LSN is visible
-- only together with all rows of its transaction). Immediate mode publishes into cdc.<ci>_CT at commit;
-- agent mode leaves the transaction pending until sys.sp_cdc_scan() publishes it.

CREATE OR REPLACE FUNCTION cdc_emulator.capture_lock() RETURNS void LANGUAGE sql AS
$$ SELECT pg_advisory_xact_lock(715517, 1) $$;

CREATE OR REPLACE FUNCTION cdc_emulator.setting(name text) RETURNS text LANGUAGE sql STABLE AS
$$ SELECT value FROM cdc_emulator.settings WHERE key = name $$;

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

-- Move one transaction's pending rows of one instance into its change table.
CREATE OR REPLACE FUNCTION cdc_emulator.publish(ci text, txids xid8[], lsns bytea[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE inst cdc_emulator.instances; cols text; moved bigint;
BEGIN
  SELECT * INTO inst FROM cdc_emulator.instances WHERE capture_instance = ci;
  IF NOT FOUND THEN RETURN 0; END IF;   -- instance disabled meanwhile: its changes go with it
  cols := cdc_emulator.column_list(ci);
  EXECUTE format(
    'WITH m AS (DELETE FROM cdc_emulator.%1$I p WHERE p.__txid = ANY($1) RETURNING *),
          l AS (SELECT * FROM unnest($1, $2) AS l(txid, lsn))
     INSERT INTO cdc.%2$I ("__$start_lsn", "__$end_lsn", "__$seqval", "__$operation", "__$update_mask", %3$s, "__$command_id")
     SELECT l.lsn, NULL, m."__$seqval", m."__$operation", m."__$update_mask", %4$s, m."__$command_id"
       FROM m JOIN l ON l.txid = m.__txid ORDER BY l.lsn, m.__ord',
    inst.pending_name, inst.ct_name, cols, cdc_emulator.column_list(ci, 'm.'))
  USING txids, lsns;
  GET DIAGNOSTICS moved = ROW_COUNT;
  RETURN moved;
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.on_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  me xid8 := pg_current_xact_id();
  commit_lsn bytea;
  ci text;
BEGIN
  IF current_setting('cdc_emulator.committed', true) = me::text THEN
    RETURN NULL;   -- one firing per (transaction, instance); the first one did the work
  END IF;
  PERFORM set_config('cdc_emulator.committed', me::text, true);
  PERFORM cdc_emulator.capture_lock();
  commit_lsn := cdc_emulator.next_commit_lsn();
  IF cdc_emulator.setting('capture_mode') = 'agent' THEN
    INSERT INTO cdc_emulator.pending_tx VALUES (me, commit_lsn, now(), clock_timestamp());
    RETURN NULL;
  END IF;
  FOR ci IN SELECT capture_instance FROM cdc_emulator.tx_touch WHERE txid = me ORDER BY 1 LOOP
    PERFORM cdc_emulator.publish(ci, ARRAY[me], ARRAY[commit_lsn]);
  END LOOP;
  DELETE FROM cdc_emulator.tx_touch WHERE txid = me;
  INSERT INTO cdc.lsn_time_mapping VALUES
    (commit_lsn, now(), clock_timestamp(), substring(int8send(me::text::bigint) FROM 1 FOR 8) || '\x0000'::bytea,
     NULL);
  RETURN NULL;
END $$;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'cdc_emulator_commit'
                  AND tgrelid = 'cdc_emulator.tx_touch'::regclass) THEN
    CREATE CONSTRAINT TRIGGER cdc_emulator_commit AFTER INSERT ON cdc_emulator.tx_touch
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdc_emulator.on_commit();
  END IF;
END $$;

-- One capture scan (agent mode): publish committed transactions in commit-LSN order, at most maxtrans per
-- scan cycle and maxscans cycles, each cycle in the caller's transaction.
CREATE OR REPLACE FUNCTION cdc_emulator.scan_once(maxtrans int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE txids xid8[]; lsns bytea[]; ci text; n int;
BEGIN
  PERFORM cdc_emulator.capture_lock();
  SELECT array_agg(txid ORDER BY commit_lsn), array_agg(commit_lsn ORDER BY commit_lsn) INTO txids, lsns
    FROM (SELECT txid, commit_lsn FROM cdc_emulator.pending_tx ORDER BY commit_lsn LIMIT maxtrans) p;
  n := coalesce(array_length(txids, 1), 0);
  IF n = 0 THEN RETURN 0; END IF;
  FOR ci IN SELECT DISTINCT capture_instance FROM cdc_emulator.tx_touch WHERE txid = ANY(txids) ORDER BY 1 LOOP
    PERFORM cdc_emulator.publish(ci, txids, lsns);
  END LOOP;
  INSERT INTO cdc.lsn_time_mapping
    SELECT commit_lsn, tran_begin_time, tran_end_time,
           substring(int8send(txid::text::bigint) FROM 1 FOR 8) || '\x0000'::bytea, NULL
      FROM cdc_emulator.pending_tx WHERE txid = ANY(txids);
  DELETE FROM cdc_emulator.tx_touch WHERE txid = ANY(txids);
  DELETE FROM cdc_emulator.pending_tx WHERE txid = ANY(txids);
  -- an instance's validity interval starts with the first LSN capture processes after it was enabled
  UPDATE cdc.change_tables SET start_lsn = lsns[1] WHERE start_lsn IS NULL;
  RETURN n;
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
