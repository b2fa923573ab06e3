SELECT TOP __[POSTCOMPILE_param_1] src.[id], src.[Name], src.[weird]]col], src.[__$not_meta]
FROM [dbo].[Order Lines] AS src
WHERE src.[id] > %(key_0)s OR src.[id] = %(key_0)s AND src.[Name] > %(key_1)s ORDER BY src.[id], src.[Name]
