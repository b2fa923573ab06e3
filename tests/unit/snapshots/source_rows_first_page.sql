SELECT TOP __[POSTCOMPILE_param_1] src.[id], src.[Name], src.[weird]]col], src.[__$not_meta]
FROM [dbo].[Order Lines] AS src ORDER BY src.[id], src.[Name]
