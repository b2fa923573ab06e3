SELECT msdb.dbo.cdc_jobs.retention
FROM msdb.dbo.cdc_jobs
WHERE msdb.dbo.cdc_jobs.database_id = db_id() AND msdb.dbo.cdc_jobs.job_type = %(job_type)s
