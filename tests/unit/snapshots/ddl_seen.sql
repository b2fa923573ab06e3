SELECT cdc.ddl_history.object_id, count(*) AS ddl_count
FROM cdc.ddl_history
WHERE cdc.ddl_history.object_id IN (__[POSTCOMPILE_object_ids]) GROUP BY cdc.ddl_history.object_id
