SELECT [dbo].[Order Lines].[id], CAST([dbo].[Order Lines].[Name] AS VARBINARY(MAX)) AS [Name], [dbo].[Order Lines].[weird]]col], [dbo].[Order Lines].[__$not_meta]
FROM [dbo].[Order Lines] ORDER BY [dbo].[Order Lines].[id], [dbo].[Order Lines].[Name]
