SELECT CAST(src.[word] AS VARBINARY(MAX)) AS [word], CAST(src.[note] AS VARBINARY(MAX)) AS [note], CAST(src.[g].STSrid AS BINARY(4)) + src.[g].STAsBinary() AS [g]
FROM [dbo].[words] AS src
WHERE src.[word] = CAST(%(k0_0)s COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS VARCHAR(8000)) OR src.[word] = CAST(%(k0_1)s COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS VARCHAR(8000))
