SELECT CURRENT_USER AS [current_user]
