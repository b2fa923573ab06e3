SELECT s.name AS source_schema, t.name AS source_table, ct.capture_instance, ct.object_id, ct.source_object_id, ct.start_lsn, ct.supports_net_changes, ct.create_date
FROM cdc.change_tables AS ct JOIN sys.tables AS t ON t.object_id = ct.source_object_id JOIN sys.schemas AS s ON s.schema_id = t.schema_id ORDER BY s.name, t.name, ct.create_date, ct.capture_instance
