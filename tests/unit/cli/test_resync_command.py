"""The resync command's default wait is the resync's own (written out twice so `--help` stays light)."""

from __future__ import annotations

import click

from mssql2pg.cli import resync as resync_command
from mssql2pg.pipeline import resync


def test_the_command_waits_as_long_as_the_resync_does_by_default() -> None:
    (wait,) = [p for p in resync_command.command.params if isinstance(p, click.Option) and p.name == "wait"]

    assert wait.default == resync.DEFAULT_WAIT_SECONDS
