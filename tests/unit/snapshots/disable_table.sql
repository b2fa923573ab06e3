EXEC sys.sp_cdc_disable_table @source_schema = %(source_schema)s, @source_name = %(source_name)s, @capture_instance = %(capture_instance)s
