SELECT %(param_1)s AS anon_1
FROM [cdc].[dbo_Order Lines_CT]
WHERE 0 = 1
