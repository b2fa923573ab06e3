"""`python -m mssql2pg` is the same as the `mssql2pg` command."""

from mssql2pg.cli import main

main()
