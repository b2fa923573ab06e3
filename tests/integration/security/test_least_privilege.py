"""Least privilege, proved (issue 15 point 5): ``mssql2pg check`` names each grant a restricted login lacks with
the exact statement to run; running exactly those statements is enough for ``check`` to pass and for ``run`` and
``resync`` to work as those logins; and a grant taken away later is reported again.

Both sides run as roles of their own, with nothing but what check asked for: on the source (the emulator,
PostgreSQL) a login with no privilege at all at first; on the target a role that may only connect (the
database's default TEMPORARY for PUBLIC is revoked). The statements check prints for the source are in the
source's dialect: PostgreSQL for the emulator (T-SQL on SQL Server, see ``tests/unit/pipeline/test_privileges.py``).
"""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pg8000.native
import pytest
import yaml

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def _as(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def _grants(output: str, side: str) -> list[str]:
    """The statements check tells to run on ``side``, one list entry per finding."""
    return re.findall(rf"-> run on the {side}: (.+)$", output, re.MULTILINE)


def _check(config: Path) -> tuple[int, str]:
    result = run_cli("check", "--config", str(config))
    return result.returncode, result.stdout + result.stderr


def _role(admin: pg8000.native.Connection, database: str) -> tuple[str, str]:
    name, password = f"r_{uuid.uuid4().hex[:8]}", secrets.token_hex(8)
    admin.run(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    admin.run(f'GRANT CONNECT ON DATABASE "{database}" TO {name}')
    return name, password


def test_check_names_each_missing_grant_and_exactly_those_grants_are_enough(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    for name in ("a", "b"):
        src.run(f"CREATE TABLE dbo.{name} (id int PRIMARY KEY, v text)")
        enable_table(src, "dbo", name)
        src.run(f"INSERT INTO dbo.{name} VALUES (1, '{name}1')")
    src.run("CREATE TABLE dbo.secret (id int PRIMARY KEY)")  # not replicated: never granted
    dst = connect(target_url)
    source_db, target_db = urlsplit(emulated_source_url).path[1:], urlsplit(target_url).path[1:]
    dst.run(f'REVOKE ALL ON DATABASE "{target_db}" FROM PUBLIC')
    reader, reader_pw = _role(src, source_db)
    writer, writer_pw = _role(dst, target_db)
    src.run(f'REVOKE ALL ON DATABASE "{source_db}" FROM PUBLIC')
    config = write_config(
        tmp_path / "p.yaml",
        _as(emulated_source_url, reader, reader_pw),
        _as(target_url, writer, writer_pw),
        ["dbo.a", "dbo.b"],
    )

    # round 1: the source login cannot read the CDC catalog
    code, out = _check(config)
    assert code == 1, out
    assert "cannot read the CDC catalog" in out
    [cdc_grant] = re.findall(r"-> run: (.+)$", out, re.MULTILINE)
    assert cdc_grant == (
        f'GRANT USAGE ON SCHEMA cdc TO "{reader}"; GRANT SELECT ON ALL TABLES IN SCHEMA cdc TO "{reader}";'
    )
    src.run(cdc_grant.split("; ")[0])
    src.run(cdc_grant.split("; ")[1].rstrip(";"))

    # round 2: the replicated tables, and everything the target role lacks
    code, out = _check(config)
    assert code == 1, out
    source_grants = _grants(out, "source")
    assert source_grants == [
        f'GRANT USAGE ON SCHEMA "dbo" TO "{reader}"; GRANT SELECT ON "dbo"."a" TO "{reader}";',
        f'GRANT USAGE ON SCHEMA "dbo" TO "{reader}"; GRANT SELECT ON "dbo"."b" TO "{reader}";',
    ]
    target_grants = _grants(out, "target")
    assert target_grants == [
        f'GRANT TEMPORARY ON DATABASE "{target_db}" TO "{writer}";',
        f'GRANT CREATE ON DATABASE "{target_db}" TO "{writer}";',
    ]
    for text in source_grants:
        for statement in text.rstrip(";").split("; "):
            src.run(statement)
    for text in target_grants:
        dst.run(text.rstrip(";"))

    # round 3: exactly those grants are enough, for check, run and resync
    code, out = _check(config)
    assert code == 0, out
    assert "all checks passed" in out
    for args in (("run", "--until-caught-up"), ("resync", "dbo.a"), ("run", "--until-caught-up")):
        result = run_cli(args[0], "--config", str(config), *args[1:])
        assert result.returncode == 0, result.stdout + result.stderr
    src.run("INSERT INTO dbo.b VALUES (2, 'b2')")
    result = run_cli("run", "--config", str(config), "--until-caught-up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert dst.run("SELECT id, v FROM dbo.a") == [[1, "a1"]]
    assert dst.run("SELECT id, v FROM dbo.b ORDER BY id") == [[1, "b1"], [2, "b2"]]
    reading = pg8000.native.Connection(
        reader, password=reader_pw, host="127.0.0.1", port=urlsplit(emulated_source_url).port, database=source_db
    )
    with pytest.raises(pg8000.native.DatabaseError, match="42501"):
        reading.run("SELECT * FROM dbo.secret")  # nothing more than asked for
    with pytest.raises(pg8000.native.DatabaseError, match="42501"):
        reading.run("DELETE FROM dbo.a")
    reading.close()

    # a grant taken away later is reported again, with the statement that restores it
    dst.run(f"REVOKE DELETE, UPDATE ON dbo.a FROM {writer}")
    code, out = _check(config)
    assert code == 1, out
    assert _grants(out, "target") == [f'GRANT UPDATE, DELETE ON "dbo"."a" TO "{writer}";']
    src.close()
    dst.close()


def _restricted_target(
    emulated_source_url: str, target_url: str, tmp_path: Path, *, protect: bool = False
) -> tuple[pg8000.native.Connection, str, str, Path]:
    """A source table ``dbo.t`` replicated once by a target role that then keeps only the documented minimum
    for existing schemas: CONNECT and TEMPORARY on the database, USAGE and CREATE on ``dbo``, and the table
    privileges on ``dbo.t``, which it no longer owns. (admin connection, role, target database, config)"""
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "t")
    src.run("INSERT INTO dbo.t VALUES (1, 'one')")
    src.close()
    dst = connect(target_url)
    target_db = urlsplit(target_url).path[1:]
    dst.run(f'REVOKE ALL ON DATABASE "{target_db}" FROM PUBLIC')
    writer, writer_pw = _role(dst, target_db)
    dst.run(f'GRANT TEMPORARY, CREATE ON DATABASE "{target_db}" TO {writer}')
    dst.run("CREATE SCHEMA dbo")
    dst.run(f"GRANT USAGE, CREATE ON SCHEMA dbo TO {writer}")
    config = write_config(tmp_path / "p.yaml", emulated_source_url, _as(target_url, writer, writer_pw), ["dbo.t"])
    if protect:
        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
        settings["target"]["protect"] = True
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    first = write_config(tmp_path / "first.yaml", emulated_source_url, _as(target_url, writer, writer_pw), ["dbo.t"])
    result = run_cli("run", "--config", str(first), "--until-caught-up")
    assert result.returncode == 0, result.stdout + result.stderr
    dst.run(f'REVOKE CREATE ON DATABASE "{target_db}" FROM {writer}')  # every schema exists now
    dst.run("ALTER TABLE dbo.t OWNER TO CURRENT_USER")
    dst.run(f"GRANT SELECT, INSERT, UPDATE, DELETE ON dbo.t TO {writer}")
    return dst, writer, target_db, config


def test_existing_schemas_need_no_create_on_the_database(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """docs/security.md: CREATE ON DATABASE only while the control schema or a target schema does not exist. A
    start must look before it creates a schema: PostgreSQL checks the database privilege of ``CREATE SCHEMA IF
    NOT EXISTS`` before it looks."""
    dst, _, _, config = _restricted_target(emulated_source_url, target_url, tmp_path)
    code, out = _check(config)
    assert code == 0, out
    for args in (("run", "--until-caught-up"), ("resync", "dbo.t"), ("run", "--until-caught-up")):
        result = run_cli(args[0], "--config", str(config), *args[1:])
        assert result.returncode == 0, result.stdout + result.stderr
    assert dst.run("SELECT id, v FROM dbo.t") == [[1, "one"]]
    dst.close()


def test_protect_needs_the_trigger_privilege_and_check_and_run_say_so(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    dst, writer, _, config = _restricted_target(emulated_source_url, target_url, tmp_path, protect=True)
    code, out = _check(config)
    assert code == 1, out
    assert "lacks TRIGGER on dbo.t (target.protect installs its guard trigger on it)" in out, out
    assert _grants(out, "target") == [f'GRANT TRIGGER ON "dbo"."t" TO "{writer}";']
    result = run_cli("run", "--config", str(config), "--until-caught-up")
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "target.protect: the role" in line, line
    assert "lacks the TRIGGER privilege on dbo.t" in line, line
    assert f'GRANT TRIGGER ON "dbo"."t" TO "{writer}"' in line, line

    dst.run(f'GRANT TRIGGER ON "dbo"."t" TO "{writer}"')
    code, out = _check(config)
    assert code == 0, out
    result = run_cli("run", "--config", str(config), "--until-caught-up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert dst.run("SELECT count(*) FROM pg_trigger WHERE tgname = 'mssql2pg_protect'") == [[1]]

    dst.run(f'REVOKE TRIGGER ON "dbo"."t" FROM "{writer}"')  # installed: no longer needed
    code, out = _check(config)
    assert code == 0, out

    # protect: false again: only the table's owner may drop the guard; check and the start say so
    code, out = _check(tmp_path / "first.yaml")
    assert code == 1, out
    assert "target.protect is false but dbo.t carries the guard trigger" in out, out
    assert _grants(out, "target") == ['DROP TRIGGER IF EXISTS "mssql2pg_protect" ON "dbo"."t"; (as the table\'s owner)']
    result = run_cli("run", "--config", str(tmp_path / "first.yaml"), "--until-caught-up")
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "target.protect is false but dbo.t carries the guard trigger" in line, line
    assert "only the table's owner may drop it" in line, line
    assert 'DROP TRIGGER IF EXISTS "mssql2pg_protect" ON "dbo"."t"' in line, line
    dst.close()
