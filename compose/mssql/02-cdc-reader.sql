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
-- No server-wide permission: nothing mssql2pg runs needs one (no VIEW SERVER STATE).
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

-- SELECT on each replicated table, and on nothing else of dbo: snapshots (mssql2pg resync), reconcile, and the
-- column metadata read from sys.columns (SQL Server shows it only for tables the login has a permission on).
-- One line per table of compose/pipeline/pipeline.yaml (tests/compose checks that they match).
GRANT SELECT ON OBJECT::dbo.customers TO cdc_reader;
GRANT SELECT ON OBJECT::dbo.orders TO cdc_reader;
GRANT SELECT ON OBJECT::dbo.order_lines TO cdc_reader;
-- The CDC catalog and change data, read directly: cdc.change_tables, cdc.captured_columns, cdc.index_columns,
-- cdc.lsn_time_mapping and each cdc.<ci>_CT (a new capture instance is covered without a new grant).
GRANT SELECT ON SCHEMA::cdc TO cdc_reader;
-- No VIEW DATABASE STATE: the capture job's DMVs (sys.dm_cdc_*) are for the DBA, mssql2pg does not read them.
-- `mssql2pg check` verifies these grants and prints the GRANT for any that is missing (docs/security.md).
GO
