SELECT TOP __[POSTCOMPILE_param_1] cdc_data.[__$start_lsn], cdc_data.[__$seqval], cdc_data.[__$operation], cdc_data.[__$update_mask], cdc_data.[__$command_id], cdc_data.[id], CAST(cdc_data.[Name] AS VARBINARY(MAX)) AS [Name], cdc_data.[weird]]col], cdc_data.[__$not_meta]
FROM cdc.[dbo_Order Lines_CT] AS cdc_data
WHERE cdc_data.[__$start_lsn] > %(after_lsn)s AND cdc_data.[__$start_lsn] <= %(to_lsn)s ORDER BY cdc_data.[__$start_lsn], cdc_data.[__$command_id], cdc_data.[__$seqval], cdc_data.[__$operation]
