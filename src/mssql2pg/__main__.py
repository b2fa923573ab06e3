"""`python -m mssql2pg` is the same as the `mssql2pg` command.

The guard matters: the reader process is started with the ``spawn`` method, which imports the parent's
``__main__`` module in the child; without it the child would run the whole command again.
"""

from mssql2pg.cli import main

if __name__ == "__main__":
    main()
