SELECT cdc.index_columns.object_id, cdc.index_columns.column_name, cdc.index_columns.index_ordinal, cdc.index_columns.column_id
FROM cdc.index_columns ORDER BY cdc.index_columns.object_id, cdc.index_columns.index_ordinal
