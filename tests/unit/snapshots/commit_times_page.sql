SELECT TOP __[POSTCOMPILE_param_1] cdc.lsn_time_mapping.start_lsn, cdc.lsn_time_mapping.tran_end_time, cdc.lsn_time_mapping.tran_id
FROM cdc.lsn_time_mapping
WHERE cdc.lsn_time_mapping.start_lsn > %(after_lsn)s AND cdc.lsn_time_mapping.start_lsn <= %(to_lsn)s ORDER BY cdc.lsn_time_mapping.start_lsn
