SELECT sys.fn_cdc_get_min_lsn(%(capture_instance)s) AS min_lsn
