-- The pipeline's least-privilege login. It can read the CDC change data of the tables it replicates and the
-- tables themselves (for snapshots and reconciliation), and nothing else: no db_owner, no sysadmin, no write.
-- $(CDC_READER_PASSWORD) is a sqlcmd variable set by init.sh from the cdc_reader_password secret.
-- Idempotent: re-running it re-applies the password from the secret, so the secret file stays the truth.
SET NOCOUNT ON;
USE master;
IF SUSER_ID(N'cdc_reader') IS NULL
    CREATE LOGIN cdc_reader
        WITH PASSWORD = N'$(CDC_READER_PASSWORD)', DEFAULT_DATABASE = shop, CHECK_POLICY = ON;
ELSE
    ALTER LOGIN cdc_reader WITH PASSWORD = N'$(CDC_READER_PASSWORD)';
-- `mssql2pg check` asks sys.dm_server_services whether SQL Server Agent runs.
GRANT VIEW SERVER STATE TO cdc_reader;
GO

USE shop;
IF USER_ID(N'cdc_reader') IS NULL
    CREATE USER cdc_reader FOR LOGIN cdc_reader;

-- The gating role named in sp_cdc_enable_table: without membership cdc.fn_cdc_get_all_changes_* fail (Msg 229).
IF NOT EXISTS (
    SELECT 1
    FROM sys.database_role_members AS rm
    JOIN sys.database_principals AS r ON r.principal_id = rm.role_principal_id
    JOIN sys.database_principals AS m ON m.principal_id = rm.member_principal_id
    WHERE r.name = N'cdc_reader_role' AND m.name = N'cdc_reader'
)
    ALTER ROLE cdc_reader_role ADD MEMBER cdc_reader;

-- SELECT on every captured column (a condition of the change functions) and on the tables for snapshots.
GRANT SELECT ON SCHEMA::dbo TO cdc_reader;
-- Direct reads of cdc.change_tables, cdc.captured_columns, cdc.lsn_time_mapping, cdc.ddl_history, <ci>_CT.
GRANT SELECT ON SCHEMA::cdc TO cdc_reader;
-- sys.dm_cdc_log_scan_sessions and sys.dm_cdc_errors (capture job health).
GRANT VIEW DATABASE STATE TO cdc_reader;
GO
