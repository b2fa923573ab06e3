SELECT TOP __[POSTCOMPILE_param_1] [dbo].[Order Lines].[id], [dbo].[Order Lines].[Name], [dbo].[Order Lines].[weird]]col], [dbo].[Order Lines].[__$not_meta]
FROM [dbo].[Order Lines]
WHERE [dbo].[Order Lines].[id] > %(key_0)s OR [dbo].[Order Lines].[id] = %(key_0)s AND [dbo].[Order Lines].[Name] > %(key_1)s ORDER BY [dbo].[Order Lines].[id], [dbo].[Order Lines].[Name]
