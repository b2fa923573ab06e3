"""Every command fails the same way when a database cannot be reached or the configuration is wrong: one line
on stderr that names the database (its URL without the password) and says what to do, exit code 2, no
traceback, and the password never printed, neither in that line nor in a log line.

The databases are "down" because nothing listens on their ports: each test takes two free ports of
127.0.0.1, one for the source and one for the target, so the line can be checked for naming the right one.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from mssql2pg.cli import cli
from tests.e2e.pipeline_process import cli_env, run_cli
from tests.fixtures.pg import free_port

pytestmark = pytest.mark.e2e

PASSWORD = "S3cret-Pw-42"  # noqa: S105 - the secret whose absence from all output the tests check


class Down:
    """A configuration whose source and target both point at closed ports."""

    def __init__(self, tmp_path: Path) -> None:
        self.source_port = free_port()
        self.target_port = free_port()
        self.source_url = f"postgresql://cdc:{PASSWORD}@127.0.0.1:{self.source_port}/shop"
        self.target_url = f"postgresql://dw:{PASSWORD}@127.0.0.1:{self.target_port}/dw"
        self.config = tmp_path / "down.yaml"
        self.config.write_text(
            f"source: {{url: '{self.source_url}'}}\n"
            f"target: {{url: '{self.target_url}'}}\n"
            "tables: [dbo.t]\n"
            "log: {format: json, level: debug}\n",
            encoding="utf-8",
        )

    def names(self, side: str) -> str:
        """How the error line names a side's database: its URL, password masked."""
        port = self.source_port if side == "source" else self.target_port
        return f"127.0.0.1:{port}"


@pytest.fixture
def down(tmp_path: Path) -> Down:
    return Down(tmp_path)


def _assert_one_clean_line(stdout: str, stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stdout + stderr
    assert PASSWORD not in stdout + stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# (command line after `mssql2pg`, the database it reaches first); CONFIG stands for the configuration's path
CONFIG = "{config}"
CONFIG_COMMANDS = [
    (["status", "--config", CONFIG], "target"),
    (["status", "--config", CONFIG, "--json"], "target"),
    (["check", "--config", CONFIG], "source"),
    (["dlq", "list", "--config", CONFIG], "target"),
    (["dlq", "show", "--config", CONFIG, "1"], "target"),
    (["dlq", "retry", "--config", CONFIG, "1"], "source"),
    (["dlq", "ignore", "--config", CONFIG, "1"], "target"),
    (["resync", "--config", CONFIG, "dbo.t"], "source"),
]


def _argv(args: list[str], down: Down) -> list[str]:
    return [str(down.config) if a == CONFIG else a for a in args]


def _ids(commands: list[tuple[list[str], str]]) -> list[str]:
    return [" ".join(a for a in args if a not in {"--config", CONFIG}) for args, _ in commands]


@pytest.mark.parametrize(("args", "side"), CONFIG_COMMANDS, ids=_ids(CONFIG_COMMANDS))
def test_a_database_that_is_down_ends_the_command_with_one_line_naming_it(
    down: Down, args: list[str], side: str
) -> None:
    result = run_cli(*_argv(args, down), timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    line = _assert_one_clean_line(result.stdout, result.stderr)
    assert f"the {side} database" in line
    assert down.names(side) in line
    assert f"{side}.url" in line  # what to check


# The one-shot emulator commands; the agent is a service and waits for its database instead (test below).
EMULATOR_COMMANDS = [["install"], ["scan"], ["mode", "agent"]]


@pytest.mark.parametrize("args", EMULATOR_COMMANDS, ids=[a[0] for a in EMULATOR_COMMANDS])
def test_an_emulator_database_that_is_down_ends_the_command_with_one_line_naming_it(
    down: Down, args: list[str]
) -> None:
    result = run_cli("emulator", args[0], "--url", down.source_url, *args[1:], timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    line = _assert_one_clean_line(result.stdout, result.stderr)
    assert down.names("source") in line
    assert "--url" in line


def test_the_emulator_agent_waits_for_a_database_that_is_down_and_stops_cleanly_on_sigterm(down: Down) -> None:
    """SQL Server Agent comes up with its server, so the emulated one, like ``run``, waits for its database:
    it logs each failed attempt (naming the database, never the password) and a SIGTERM ends it cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mssql2pg", "emulator", "agent", "--url", down.source_url, "--polling-interval", "1s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the first failed attempt is logged
        assert "reconnecting" in first, first
        assert down.names("source").split(":")[1] in first  # the port of the database it waits for
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    output = first + stdout + stderr
    assert "Traceback" not in output
    assert PASSWORD not in output
    assert "stopped after publishing 0 transactions" in stdout


def test_run_with_one_config_mistake_says_it_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"source: {{url: 'postgresql://u:{PASSWORD}@127.0.0.1:1/x'}}\ntarget: {{url: 'postgresql://u@127.0.0.1:1/y'}}\n"
        "tables: [dbo.t]\nreader: {poll_intervall: 1}\n",
        encoding="utf-8",
    )

    result = run_cli("run", "--config", str(config), timeout=60)

    assert result.returncode == 2
    line = _assert_one_clean_line(result.stdout, result.stderr)
    assert "poll_intervall" in line
    assert "did you mean 'poll_interval'" in line
    assert "docs/configuration.md" in line  # the hint: where the keys are explained


def test_run_with_several_config_mistakes_names_them_all_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"source: {{url: 'postgresql://u:{PASSWORD}@127.0.0.1:1/x'}}\ntables: [dbo.t]\n"
        "retry: {initial: -1}\nfoo: 1\n",
        encoding="utf-8",
    )

    result = run_cli("run", "--config", str(config), timeout=60)

    assert result.returncode == 2
    line = _assert_one_clean_line(result.stdout, result.stderr)
    for problem in ("target", "retry.initial", "'foo'"):
        assert problem in line


def test_run_with_a_missing_config_file_says_it_in_one_line(tmp_path: Path) -> None:
    result = run_cli("run", "--config", str(tmp_path / "nowhere.yaml"), timeout=60)

    assert result.returncode == 2
    line = _assert_one_clean_line(result.stdout, result.stderr)
    assert "nowhere.yaml" in line


# ----------------------------------------------------------------------------------- the redacting logger


@pytest.fixture
def pristine_logging() -> Iterator[None]:
    """No mssql2pg log handler before the test; the process's logging set-up restored after it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog_config = structlog.get_config()
    for handler in [h for h in root.handlers if h.get_name() == "mssql2pg"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**structlog_config)


@pytest.mark.usefixtures("pristine_logging")
@pytest.mark.parametrize(("args", "side"), CONFIG_COMMANDS, ids=_ids(CONFIG_COMMANDS))
def test_every_command_logs_through_the_redacting_logger_at_the_configured_level(
    down: Down, args: list[str], side: str
) -> None:
    result = CliRunner().invoke(cli, _argv(args, down))

    assert result.exit_code == 2, result.output
    assert f"the {side} database" in result.output
    assert PASSWORD not in result.output
    root = logging.getLogger()
    assert [h.get_name() for h in root.handlers].count("mssql2pg") == 1  # the redacting handler
    assert root.level == logging.DEBUG  # log.level from the configuration, not a default


@pytest.mark.usefixtures("pristine_logging")
@pytest.mark.parametrize("args", EMULATOR_COMMANDS, ids=[a[0] for a in EMULATOR_COMMANDS])
def test_emulator_commands_log_through_the_redacting_logger(down: Down, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["emulator", args[0], "--url", down.source_url, *args[1:]])

    assert result.exit_code == 2, result.output
    assert PASSWORD not in result.output
    assert [h.get_name() for h in logging.getLogger().handlers].count("mssql2pg") == 1
