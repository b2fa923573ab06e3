"""The stack's shell one-liners and the SQL Server init script, run for real with a stub in place of sqlcmd
and sqlservr: quoting mistakes (a password split in two, a query cut at a quote) show up here, not on the
first `docker compose up`.

Container paths (/run/secrets/…, /opt/mssql-tools18/bin/sqlcmd, /opt/mssql/bin/sqlservr) are rewritten to
temporary files; everything else is the exact text from compose.yaml and compose/mssql/init.sh.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.compose.stack_files import MSSQL_INIT_DIR, secret_file, services

# A stub that records its argv and the variables the real programs read, one JSON object per call.
_STUB = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as fh:
    env = {k: os.environ.get(k) for k in ("SQLCMDPASSWORD", "MSSQL_SA_PASSWORD")}
    fh.write(json.dumps({"argv": sys.argv[1:], "env": env}) + "\\n")
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
"""


@pytest.fixture
def stub(tmp_path: Path) -> tuple[Path, Path]:
    program = tmp_path / "stub"
    program.write_text(_STUB, encoding="utf-8")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program, tmp_path / "calls.jsonl"


def _calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _localise(command: str, secrets: Path, stub_program: Path) -> str:
    return (
        command.replace("/run/secrets/", f"{secrets}/")
        .replace("/opt/mssql-tools18/bin/sqlcmd", str(stub_program))
        .replace("/opt/mssql/bin/sqlservr", str(stub_program))
    )


def _secrets_dir(tmp_path: Path, **values: str) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name, value in values.items():
        (folder / name).write_text(value, encoding="utf-8")
    return folder


def test_sql_server_starts_with_the_sa_password_from_its_secret(tmp_path: Path, stub: tuple[Path, Path]) -> None:
    program, log = stub
    password = secret_file("mssql_sa_password").read_text(encoding="utf-8")
    secrets = _secrets_dir(tmp_path, mssql_sa_password=password)
    command = [_localise(arg, secrets, program) for arg in services()["mssql"]["command"]]
    subprocess.run(command, env={**os.environ, "STUB_LOG": str(log)}, check=True, timeout=30)
    assert _calls(log) == [{"argv": [], "env": {"SQLCMDPASSWORD": None, "MSSQL_SA_PASSWORD": password}}]


@pytest.mark.parametrize(("stub_exit", "healthy"), [(0, True), (1, False)])
def test_the_sql_server_health_check_passes_the_password_and_the_query_intact(
    tmp_path: Path, stub: tuple[Path, Path], stub_exit: int, healthy: bool
) -> None:
    program, log = stub
    password = "Pa ss'w\"0rd$x"  # noqa: S105 - a test value: spaces and quotes must survive the shell
    secrets = _secrets_dir(tmp_path, mssql_sa_password=password)
    check = services()["mssql"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    result = subprocess.run(
        ["/bin/sh", "-c", _localise(check[1], secrets, program)],
        env={**os.environ, "STUB_LOG": str(log), "STUB_EXIT": str(stub_exit)},
        check=False,
        timeout=30,
    )
    assert (result.returncode == 0) is healthy
    [call] = _calls(log)
    assert call["env"] == {"SQLCMDPASSWORD": password, "MSSQL_SA_PASSWORD": None}
    argv = call["argv"]
    assert isinstance(argv, list)
    query = argv[argv.index("-Q") + 1]
    assert query.startswith("SET NOCOUNT ON;")
    assert query.endswith("RAISERROR(N'SQL Server Agent is not running', 16, 1)")
    assert "-P" not in argv


def test_mssql_init_runs_both_scripts_as_sa_and_quotes_the_reader_password(
    tmp_path: Path, stub: tuple[Path, Path]
) -> None:
    program, log = stub
    secrets = _secrets_dir(tmp_path, sa="Sa-Passw0rd", reader="it's-Re4der")
    env = {
        **os.environ,
        "STUB_LOG": str(log),
        "SQLCMD": str(program),
        "MSSQL_HOST": "mssql",
        "MSSQL_SA_PASSWORD_FILE": str(secrets / "sa"),
        "CDC_READER_PASSWORD_FILE": str(secrets / "reader"),
    }
    result = subprocess.run(
        ["bash", str(MSSQL_INIT_DIR / "init.sh")], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
    calls = _calls(log)
    assert [c["env"] for c in calls] == [{"SQLCMDPASSWORD": "Sa-Passw0rd", "MSSQL_SA_PASSWORD": None}] * 2
    first, second = (c["argv"] for c in calls)
    assert isinstance(first, list)
    assert isinstance(second, list)
    common = ["-C", "-S", "mssql", "-U", "sa", "-b", "-I", "-l", "30"]
    assert first == [*common, "-i", "/init/01-shop.sql"]
    assert second == [*common, "-v", "CDC_READER_PASSWORD=it''s-Re4der", "-i", "/init/02-cdc-reader.sql"]


def test_mssql_init_stops_at_the_first_failing_script(tmp_path: Path, stub: tuple[Path, Path]) -> None:
    program, log = stub
    secrets = _secrets_dir(tmp_path, sa="Sa-Passw0rd", reader="Re4der-pw")
    env = {
        **os.environ,
        "STUB_LOG": str(log),
        "STUB_EXIT": "1",
        "SQLCMD": str(program),
        "MSSQL_SA_PASSWORD_FILE": str(secrets / "sa"),
        "CDC_READER_PASSWORD_FILE": str(secrets / "reader"),
    }
    result = subprocess.run(
        ["bash", str(MSSQL_INIT_DIR / "init.sh")], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode != 0, "a failed CDC setup must fail mssql-init, so the pipeline does not start"
    assert len(_calls(log)) == 1
