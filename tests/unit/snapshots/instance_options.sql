SELECT cdc.change_tables.capture_instance, cdc.change_tables.role_name, cdc.change_tables.index_name, cdc.change_tables.filegroup_name, cdc.change_tables.supports_net_changes, cdc.change_tables.partition_switch
FROM cdc.change_tables
WHERE cdc.change_tables.capture_instance = %(capture_instance)s
