SELECT CAST(src.[word] AS VARBINARY(MAX)) AS [word], CAST(src.[note] AS VARBINARY(MAX)) AS [note], CAST(src.[g].STSrid AS BINARY(4)) + src.[g].STAsBinary() AS [g]
FROM [dbo].[words] AS src
WHERE CAST(src.[word] AS VARBINARY(MAX)) = %(k0_0)s
