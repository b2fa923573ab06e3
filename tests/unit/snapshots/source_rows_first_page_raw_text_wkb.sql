SELECT TOP __[POSTCOMPILE_param_1] src.[id], CAST(src.[Name] AS VARBINARY(MAX)) AS [Name], CAST(src.[weird]]col].STSrid AS BINARY(4)) + src.[weird]]col].STAsBinary() AS [weird]]col], src.[__$not_meta]
FROM [dbo].[Order Lines] AS src ORDER BY src.[id], src.[Name]
