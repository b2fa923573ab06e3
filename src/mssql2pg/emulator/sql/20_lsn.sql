-- LSN helpers: 10-byte big-endian values, VLF 0x0000002A, never zero (reference/sqlserver-cdc.md section 3).

CREATE OR REPLACE FUNCTION cdc_emulator.lsn(n bigint) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT '\x0000002a'::bytea || substring(int8send(n) FROM 3 FOR 6) $$;

CREATE OR REPLACE FUNCTION cdc_emulator.lsn_to_numeric(lsn bytea) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE v numeric := 0;
BEGIN
  IF octet_length(lsn) <> 10 THEN
    RAISE EXCEPTION 'Msg 313: An insufficient number of arguments were supplied for the procedure or function sys.fn_cdc_increment_lsn.'
      USING ERRCODE = '22023', DETAIL = format('an LSN is 10 bytes, got %s', octet_length(lsn));
  END IF;
  FOR i IN 0..9 LOOP v := v * 256 + get_byte(lsn, i); END LOOP;
  RETURN v;
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.numeric_to_lsn(v numeric) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE b bytea := '\x00000000000000000000'; x numeric := v;
BEGIN
  IF x < 0 OR x >= 256::numeric ^ 10 THEN
    RAISE EXCEPTION 'LSN arithmetic out of range' USING ERRCODE = '22003';
  END IF;
  FOR i IN REVERSE 9..0 LOOP
    b := set_byte(b, i, (x % 256)::int);
    x := trunc(x / 256);
  END LOOP;
  RETURN b;
END $$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_increment_lsn(lsn bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT cdc_emulator.numeric_to_lsn(cdc_emulator.lsn_to_numeric(lsn) + 1) $$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_decrement_lsn(lsn bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT cdc_emulator.numeric_to_lsn(cdc_emulator.lsn_to_numeric(lsn) - 1) $$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_get_max_lsn() RETURNS bytea
LANGUAGE sql STABLE AS $$ SELECT start_lsn FROM cdc.lsn_time_mapping ORDER BY start_lsn DESC LIMIT 1 $$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_get_min_lsn(capture_instance_name text) RETURNS bytea
LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = capture_instance_name),
                  '\x00000000000000000000'::bytea)
$$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_map_lsn_to_time(lsn_value bytea) RETURNS timestamp(3)
LANGUAGE sql STABLE AS $$ SELECT tran_end_time FROM cdc.lsn_time_mapping WHERE start_lsn = lsn_value $$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_map_time_to_lsn(relational_operator text, tracking_time timestamp)
RETURNS bytea LANGUAGE plpgsql STABLE AS $$
DECLARE op text := lower(btrim(relational_operator));
BEGIN
  RETURN CASE op
    WHEN 'largest less than' THEN
      (SELECT start_lsn FROM cdc.lsn_time_mapping WHERE tran_end_time < tracking_time AND tran_id <> '\x00' ORDER BY start_lsn DESC LIMIT 1)
    WHEN 'largest less than or equal' THEN
      (SELECT start_lsn FROM cdc.lsn_time_mapping WHERE tran_end_time <= tracking_time AND tran_id <> '\x00' ORDER BY start_lsn DESC LIMIT 1)
    WHEN 'smallest greater than' THEN
      (SELECT start_lsn FROM cdc.lsn_time_mapping WHERE tran_end_time > tracking_time AND tran_id <> '\x00' ORDER BY start_lsn LIMIT 1)
    WHEN 'smallest greater than or equal' THEN
      (SELECT start_lsn FROM cdc.lsn_time_mapping WHERE tran_end_time >= tracking_time AND tran_id <> '\x00' ORDER BY start_lsn LIMIT 1)
    ELSE cdc_emulator.raise_error(22903, format('The relational operator ''%s'' is not valid for '
                                  'sys.fn_cdc_map_time_to_lsn.', relational_operator))::bytea END;
END $$;

CREATE OR REPLACE FUNCTION cdc_emulator.raise_error(number int, message text, sqlstate text DEFAULT 'P0001')
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'Msg %: %', number, message USING ERRCODE = sqlstate;
END $$;

-- Bit for column_ordinal k: bit (k-1) % 8 of byte (k-1) / 8 counted from the END (section 1.7).
CREATE OR REPLACE FUNCTION sys.fn_cdc_is_bit_set("position" int, update_mask bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT CASE WHEN "position" < 1 OR ("position" - 1) / 8 >= octet_length(update_mask) THEN false
         ELSE get_bit(update_mask, (octet_length(update_mask) - 1 - ("position" - 1) / 8) * 8
                                   + ("position" - 1) % 8) = 1 END
$$;

CREATE OR REPLACE FUNCTION cdc_emulator.mask(changed boolean[]) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE n int := coalesce(array_length(changed, 1), 0); len int; m bytea;
BEGIN
  len := greatest(1, (n + 7) / 8);
  m := substring('\x00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000'::bytea FROM 1 FOR len);
  FOR k IN 1..n LOOP
    IF changed[k] THEN
      m := set_bit(m, (len - 1 - (k - 1) / 8) * 8 + (k - 1) % 8, 1);
    END IF;
  END LOOP;
  RETURN m;
END $$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_get_column_ordinal(capture_instance text, column_name text) RETURNS int
LANGUAGE sql STABLE AS $$
  SELECT cc.column_ordinal FROM cdc.captured_columns cc
    JOIN cdc.change_tables ct ON ct.object_id = cc.object_id
   WHERE ct.capture_instance = fn_cdc_get_column_ordinal.capture_instance
     AND cc.column_name = fn_cdc_get_column_ordinal.column_name
$$;

CREATE OR REPLACE FUNCTION sys.fn_cdc_has_column_changed(capture_instance text, column_name text, update_mask bytea)
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT sys.fn_cdc_is_bit_set(sys.fn_cdc_get_column_ordinal(capture_instance, column_name), update_mask)
$$;

-- Commit-LSN allocation. Called with the capture lock held (see 30_capture.sql), so commit order = LSN order.
CREATE OR REPLACE FUNCTION cdc_emulator.next_commit_lsn() RETURNS bytea
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  UPDATE cdc_emulator.lsn_clock SET last = greatest(last + 1, nextval('cdc_emulator.change_seq'))
   WHERE id = 1 RETURNING last INTO n;
  RETURN cdc_emulator.lsn(n);
END $$;
