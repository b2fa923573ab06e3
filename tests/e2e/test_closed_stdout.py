"""A reader that closes the pipe early (``mssql2pg status | head -1``) ends the command quietly, as it ends
other Unix tools: no error line (it is not a database that failed), exit code 141 (128 + SIGPIPE, what a shell
reports for a tool SIGPIPE ended)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import cli_env, run_cli, write_config
from tests.fixtures.emulator import two_cdc_tables

pytestmark = pytest.mark.e2e

CLOSED_PIPE_EXIT = 141


def _with_closed_stdout(*args: str) -> tuple[int, str]:
    """Run ``mssql2pg args`` with a stdout whose reading end is already closed; (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mssql2pg", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            env=cli_env(),
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "command",
    [["status"], ["schema", "list"], ["dlq", "list"], ["reconcile"], ["check"]],
    ids=" ".join,
)
def test_a_closed_stdout_ends_a_printing_command_quietly(
    emulated_source_url: str, target_url: str, tmp_path: Path, command: list[str]
) -> None:
    src = connect(emulated_source_url)
    two_cdc_tables(src)
    src.close()
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    assert run_cli("run", "--config", str(config), "--until-caught-up").returncode == 0

    code, stderr = _with_closed_stdout(*command, "--config", str(config))

    assert "error" not in stderr.lower(), stderr
    assert "Traceback" not in stderr
    assert code == CLOSED_PIPE_EXIT, stderr
