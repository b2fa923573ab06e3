SELECT count_big(*) AS count_big_1
FROM [dbo].[Order Lines]
