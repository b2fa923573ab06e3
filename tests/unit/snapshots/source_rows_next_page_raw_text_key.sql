SELECT TOP __[POSTCOMPILE_param_1] src.[id], CAST(src.[Name] AS VARBINARY(MAX)) AS [Name], src.[weird]]col], src.[__$not_meta]
FROM [dbo].[Order Lines] AS src
WHERE src.[id] > %(key_0)s OR src.[id] = %(key_0)s AND src.[Name] > CAST(%(key_1)s COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS VARCHAR(8000)) ORDER BY src.[id], src.[Name]
