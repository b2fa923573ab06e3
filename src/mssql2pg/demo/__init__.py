"""``mssql2pg demo``: the pipeline end to end on a throwaway local PostgreSQL, and the workload it runs."""
