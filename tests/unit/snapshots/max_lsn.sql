SELECT sys.fn_cdc_get_max_lsn() AS max_lsn
