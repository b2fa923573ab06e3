SELECT IS_MEMBER(%(role)s) AS is_db_owner
