SELECT sys.columns.object_id, sys.columns.column_id, sys.columns.name
FROM sys.columns
WHERE sys.columns.object_id IN (__[POSTCOMPILE_object_ids]) ORDER BY sys.columns.object_id, sys.columns.column_id
