SELECT cdc.lsn_time_mapping.tran_end_time
FROM cdc.lsn_time_mapping
WHERE cdc.lsn_time_mapping.start_lsn = %(lsn)s
