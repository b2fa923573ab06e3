-- Demo source database for the Compose stack: three tables (the same shape as `mssql2pg demo` uses), CDC
-- enabled on each, and the capture job polling every second.
-- Idempotent: Compose re-runs mssql-init on every `up`, so every step checks before it acts.
SET NOCOUNT ON;
IF DB_ID(N'shop') IS NULL
    CREATE DATABASE shop;
GO

USE shop;
GO

IF OBJECT_ID(N'dbo.customers', N'U') IS NULL
    CREATE TABLE dbo.customers (
        id int NOT NULL CONSTRAINT pk_customers PRIMARY KEY,
        name nvarchar(100) NOT NULL,
        email nvarchar(200) NULL,
        balance decimal(12, 2) NOT NULL,
        updated_at datetime2(3) NOT NULL CONSTRAINT df_customers_updated_at DEFAULT SYSUTCDATETIME()
    );

IF OBJECT_ID(N'dbo.orders', N'U') IS NULL
    CREATE TABLE dbo.orders (
        id bigint NOT NULL CONSTRAINT pk_orders PRIMARY KEY,
        customer_id int NOT NULL,
        total decimal(12, 2) NOT NULL,
        status nvarchar(20) NOT NULL,
        note nvarchar(max) NULL,
        created_at datetime2(3) NOT NULL CONSTRAINT df_orders_created_at DEFAULT SYSUTCDATETIME()
    );

IF OBJECT_ID(N'dbo.order_lines', N'U') IS NULL
    CREATE TABLE dbo.order_lines (
        order_id bigint NOT NULL,
        line_no int NOT NULL,
        product nvarchar(50) NOT NULL,
        qty int NOT NULL,
        CONSTRAINT pk_order_lines PRIMARY KEY (order_id, line_no)
    );
GO

-- Needs sysadmin. Creates the cdc schema, the cdc user and the catalog tables.
IF (SELECT is_cdc_enabled FROM sys.databases WHERE name = N'shop') = 0
    EXEC sys.sp_cdc_enable_db;
GO

-- One capture instance per table, named explicitly (<schema>_<table>_v1) so a later schema change can add a
-- _v2 next to it. @role_name is the gating role: only its members (cdc_reader) may read the changes; it is
-- created on first use. @supports_net_changes = 0: the pipeline reads every change, not net changes.
IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE capture_instance = N'dbo_customers_v1')
    EXEC sys.sp_cdc_enable_table
        @source_schema = N'dbo', @source_name = N'customers', @role_name = N'cdc_reader_role',
        @capture_instance = N'dbo_customers_v1', @supports_net_changes = 0;

IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE capture_instance = N'dbo_orders_v1')
    EXEC sys.sp_cdc_enable_table
        @source_schema = N'dbo', @source_name = N'orders', @role_name = N'cdc_reader_role',
        @capture_instance = N'dbo_orders_v1', @supports_net_changes = 0;

IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE capture_instance = N'dbo_order_lines_v1')
    EXEC sys.sp_cdc_enable_table
        @source_schema = N'dbo', @source_name = N'order_lines', @role_name = N'cdc_reader_role',
        @capture_instance = N'dbo_order_lines_v1', @supports_net_changes = 0;
GO

-- Demo latency: the capture job polls every second instead of every 5 s. The change takes effect only after
-- the job is stopped and started. Stopping is refused while the job has not started yet (right after the
-- first sp_cdc_enable_table), hence TRY/CATCH; only done when the interval is not 1 s already.
IF EXISTS (
    SELECT 1 FROM msdb.dbo.cdc_jobs
    WHERE database_id = DB_ID(N'shop') AND job_type = N'capture' AND pollinginterval <> 1
)
BEGIN
    EXEC sys.sp_cdc_change_job @job_type = N'capture', @pollinginterval = 1;
    BEGIN TRY
        EXEC sys.sp_cdc_stop_job @job_type = N'capture';
    END TRY
    BEGIN CATCH
        PRINT N'capture job not stopped (it may not have started yet): ' + ERROR_MESSAGE();
    END CATCH;
    WAITFOR DELAY '00:00:03';
    BEGIN TRY
        EXEC sys.sp_cdc_start_job @job_type = N'capture';
    END TRY
    BEGIN CATCH
        PRINT N'capture job not started (it may be running already): ' + ERROR_MESSAGE();
    END CATCH;
END;
GO

-- Do not hand over to the pipeline until the capture job really runs: otherwise changes would be written
-- to the log and never reach the change tables, and nothing would say so.
DECLARE @deadline datetime2 = DATEADD(SECOND, 120, SYSUTCDATETIME());
DECLARE @started bit = 0;
WHILE NOT EXISTS (
    SELECT 1
    FROM msdb.dbo.sysjobactivity AS a
    JOIN msdb.dbo.sysjobs AS j ON j.job_id = a.job_id
    WHERE j.name = N'cdc.shop_capture'
      AND a.session_id = (SELECT MAX(session_id) FROM msdb.dbo.syssessions)
      AND a.start_execution_date IS NOT NULL
      AND a.stop_execution_date IS NULL
)
BEGIN
    IF SYSUTCDATETIME() > @deadline
    BEGIN
        -- Severity 16 under sqlcmd -b: mssql-init exits non-zero and the pipeline is not started.
        RAISERROR(N'The CDC capture job cdc.shop_capture is not running after 120 s. Check that SQL Server Agent runs (MSSQL_AGENT_ENABLED=true) and read: docker compose logs mssql', 16, 1);
        RETURN;
    END;
    IF @started = 0
    BEGIN
        SET @started = 1;
        BEGIN TRY
            EXEC sys.sp_cdc_start_job @job_type = N'capture';
        END TRY
        BEGIN CATCH
            PRINT N'capture job start: ' + ERROR_MESSAGE();
        END CATCH;
    END;
    WAITFOR DELAY '00:00:01';
END;
PRINT N'CDC capture job cdc.shop_capture is running';
GO
