"""The stack's init scripts: SQL Server (static: no SQL Server here), PostgreSQL and the alert sink (run for
real against a local PostgreSQL server and as a local process).

The SQL Server checks tie the T-SQL to the pipeline config: every table the pipeline replicates has CDC
enabled with a gating role the pipeline's login belongs to, and that login gets nothing more than it needs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.compose.stack_files import COMPOSE_DIR, MSSQL_INIT_DIR, mounts, pipeline_config, services
from tests.fixtures.pg import PgServer, find_bindir, free_port
from tests.fixtures.waiting import wait_for

SHOP_SQL = (MSSQL_INIT_DIR / "01-shop.sql").read_text(encoding="utf-8")
READER_SQL = (MSSQL_INIT_DIR / "02-cdc-reader.sql").read_text(encoding="utf-8")
INIT_SH = (MSSQL_INIT_DIR / "init.sh").read_text(encoding="utf-8")
WAREHOUSE_SH = COMPOSE_DIR / "postgres" / "initdb" / "10-warehouse.sh"
ALERT_SINK = COMPOSE_DIR / "alert-sink" / "alert_sink.py"

_ENABLE_TABLE = re.compile(r"EXEC\s+sys\.sp_cdc_enable_table\s+(?P<args>.*?);", re.IGNORECASE | re.DOTALL)
_NAMED_ARG = re.compile(r"@(?P<name>\w+)\s*=\s*(?:N'(?P<text>[^']*)'|(?P<number>\d+))")


def _enable_table_calls() -> list[dict[str, str]]:
    calls = []
    for match in _ENABLE_TABLE.finditer(SHOP_SQL):
        args = {
            m["name"]: m["text"] if m["text"] is not None else m["number"] for m in _NAMED_ARG.finditer(match["args"])
        }
        calls.append(args)
    return calls


def _created_tables() -> dict[str, str]:
    """{schema.table: column definitions} for each CREATE TABLE in the shop script."""
    pattern = re.compile(r"CREATE TABLE (\w+)\.(\w+) \((.*?)\n    \);", re.DOTALL)
    return {f"{m[1]}.{m[2]}": m[3] for m in pattern.finditer(SHOP_SQL)}


def test_cdc_is_enabled_on_exactly_the_tables_the_pipeline_replicates() -> None:
    enabled = {f"{c['source_schema']}.{c['source_name']}" for c in _enable_table_calls()}
    assert enabled == set(pipeline_config()["tables"])
    assert set(_created_tables()) == enabled


def test_every_replicated_table_has_a_primary_key() -> None:
    for table, body in _created_tables().items():
        assert "PRIMARY KEY" in body, f"{table} has no primary key: the target could not upsert it"


def test_each_capture_instance_is_named_gated_and_guarded_for_reruns() -> None:
    calls = _enable_table_calls()
    instances = [c["capture_instance"] for c in calls]
    assert len(set(instances)) == len(instances)
    for call in calls:
        assert call["capture_instance"] == f"{call['source_schema']}_{call['source_name']}_v1"
        assert call["role_name"] == "cdc_reader_role", "a NULL role would let any SELECT-er read the changes"
        assert call["supports_net_changes"] == "0"
        guard = f"capture_instance = N'{call['capture_instance']}'"
        assert guard in SHOP_SQL, f"{call['capture_instance']}: re-running the init would fail without a guard"


def test_the_shop_script_is_idempotent_step_by_step() -> None:
    assert "IF DB_ID(N'shop') IS NULL" in SHOP_SQL
    for table in _created_tables():
        assert f"IF OBJECT_ID(N'{table}', N'U') IS NULL" in SHOP_SQL
    assert re.search(r"is_cdc_enabled .*= 0\s+EXEC sys\.sp_cdc_enable_db", SHOP_SQL, re.DOTALL)


def test_init_waits_until_the_capture_job_runs_and_fails_loudly_otherwise() -> None:
    assert "cdc.shop_capture" in SHOP_SQL
    assert "stop_execution_date IS NULL" in SHOP_SQL
    assert re.search(r"RAISERROR\(N'The CDC capture job .*', 16, 1\);\s+RETURN;", SHOP_SQL)


def test_init_script_stops_on_the_first_sql_error_and_trusts_the_local_certificate() -> None:
    assert "set -euo pipefail" in INIT_SH
    run = re.search(r'"\$SQLCMD" (.*)', INIT_SH)
    assert run
    flags = run.group(1).split()
    assert {"-C", "-b", "-I"} <= set(flags)
    assert "-P" not in flags, "the SA password goes through SQLCMDPASSWORD, not the command line"
    assert os.access(MSSQL_INIT_DIR / "init.sh", os.X_OK) or services()["mssql-init"]["entrypoint"][0] == "/bin/bash"
    init_mount = next(m for m in mounts(services()["mssql-init"]) if m.target == "/init")
    assert init_mount.host_path() == MSSQL_INIT_DIR
    for script in re.findall(r"-i (/init/\S+)", INIT_SH):
        assert (MSSQL_INIT_DIR / Path(script).name).is_file()


def test_the_reader_password_is_quoted_for_the_t_sql_literal() -> None:
    """A single quote in the secret must not end the N'…' literal (and must not inject SQL)."""
    assert "N'$(CDC_READER_PASSWORD)'" in READER_SQL
    line = next(ln for ln in INIT_SH.splitlines() if "CDC_READER_PASSWORD=" in ln)
    assert "//\\'/\\'\\'" in line
    result = subprocess.run(
        ["bash", "-c", 'p="$1"; printf %s "${p//\\\'/\\\'\\\'}"', "_", "it's'; DROP--"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "it''s''; DROP--"


def test_the_pipeline_logs_in_as_the_least_privilege_login() -> None:
    url = urlsplit(pipeline_config()["source"]["url"])
    assert url.scheme == "mssql+pytds"
    assert url.username == "cdc_reader"
    assert url.password is None, "the password comes from MSSQL2PG__SOURCE__PASSWORD_FILE"
    assert (url.hostname, url.port, url.path) == ("mssql", 1433, "/shop")
    assert 1433 in {int(p) for p in services()["mssql"]["expose"]}
    assert "CREATE LOGIN cdc_reader" in READER_SQL
    assert "CREATE USER cdc_reader FOR LOGIN cdc_reader" in READER_SQL
    assert "ALTER ROLE cdc_reader_role ADD MEMBER cdc_reader" in READER_SQL


def test_the_reader_login_gets_the_documented_minimum_only() -> None:
    """SELECT on the cdc schema and on each replicated table (exactly the pipeline's), nothing server-wide, no
    other schema, nothing that writes (issue 15 point 5; the minimum is in docs/security.md)."""
    grants = re.findall(r"^GRANT (.+?) TO cdc_reader;", READER_SQL, re.MULTILINE)
    tables = [f"SELECT ON OBJECT::{t}" for t in pipeline_config()["tables"]]
    assert sorted(grants) == sorted(["SELECT ON SCHEMA::cdc", *tables])
    code = re.sub(r"--.*", "", READER_SQL).upper()
    for forbidden in (
        "DB_OWNER",
        "SYSADMIN",
        "CONTROL",
        "INSERT",
        "UPDATE",
        "DELETE",
        "ALTER ANY",
        "EXECUTE",
        "VIEW SERVER STATE",
        "VIEW DATABASE STATE",
        "SCHEMA::DBO",
    ):
        assert forbidden not in code, f"cdc_reader must not get {forbidden}"
    docs = (COMPOSE_DIR.parent / "docs" / "security.md").read_text(encoding="utf-8")
    assert "GRANT SELECT ON SCHEMA::cdc" in docs


def test_the_pipeline_writes_as_the_warehouse_role_into_dw() -> None:
    url = urlsplit(pipeline_config()["target"]["url"])
    assert url.scheme == "postgresql"
    assert (url.username, url.hostname, url.port, url.path) == ("warehouse", "postgres", 5432, "/dw")
    assert url.password is None
    env = services()["postgres"]["environment"]
    assert (env["WAREHOUSE_USER"], env["WAREHOUSE_DB"]) == ("warehouse", "dw")
    assert services()["postgres"]["healthcheck"]["test"][-4:] == ["-U", "warehouse", "-d", "dw"]


# ---- PostgreSQL init script, run for real -----------------------------------------------------------------


@pytest.fixture
def warehouse_names(target_server: PgServer) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    role, db = f"wh_{suffix}", f"dw_{suffix}"
    yield role, db
    conn = target_server.connect("postgres")
    try:
        conn.run(f'DROP DATABASE IF EXISTS "{db}"')
        conn.run(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        conn.close()


@pytest.mark.integration
def test_postgres_init_creates_a_warehouse_role_that_owns_dw_and_can_create_schemas(
    target_server: PgServer, warehouse_names: tuple[str, str], tmp_path: Path
) -> None:
    role, db = warehouse_names
    secret = tmp_path / "warehouse_password"
    secret.write_text('it\'s a "dev" password; DROP ROLE postgres;--', encoding="utf-8")
    env = {
        **os.environ,
        "PATH": f"{find_bindir()}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(target_server.port),
        "PGPASSWORD": target_server.password,
        "POSTGRES_USER": target_server.user,
        "POSTGRES_DB": "postgres",
        "WAREHOUSE_USER": role,
        "WAREHOUSE_DB": db,
        "WAREHOUSE_PASSWORD_FILE": str(secret),
    }
    result = subprocess.run(
        ["bash", str(WAREHOUSE_SH)], env=env, check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

    admin = target_server.connect("postgres")
    try:
        rows = admin.run(
            "SELECT r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, left(r.rolpassword, 14),"
            " pg_get_userbyid(d.datdba) FROM pg_authid r, pg_database d WHERE r.rolname = :r AND d.datname = :d",
            r=role,
            d=db,
        )
        assert rows == [[True, False, False, False, "SCRAM-SHA-256$", role]]
        public_connect = admin.run("SELECT has_database_privilege('public', :d, 'CONNECT')", d=db)
        assert public_connect == [[False]]
        assert admin.run("SELECT 1 FROM pg_roles WHERE rolname = 'postgres' OR rolname = :u", u=target_server.user)
    finally:
        admin.close()

    import pg8000.native  # noqa: PLC0415

    as_role = pg8000.native.Connection(
        user=role, password=secret.read_text(encoding="utf-8"), host="127.0.0.1", port=target_server.port, database=db
    )
    try:
        as_role.run("CREATE SCHEMA dbo")
        as_role.run("CREATE TABLE dbo.t (id int PRIMARY KEY)")
        as_role.run("INSERT INTO dbo.t VALUES (1)")
        assert as_role.run("SELECT count(*) FROM dbo.t") == [[1]]
    finally:
        as_role.close()


# ---- the alert sink, run for real -------------------------------------------------------------------------


@pytest.fixture
def alert_sink() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ALERT_SINK)],
        env={**os.environ, "ALERT_SINK_PORT": str(port), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_alert_sink_prints_each_notification_as_one_json_line(
    alert_sink: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = alert_sink
    assert proc.stdout is not None
    started = json.loads(proc.stdout.readline())
    assert started["alert_sink"] == 1

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)

    wait_for(healthy, timeout=20, what="alert sink /healthz answers 200")
    notification = {
        "version": "4",
        "status": "firing",
        "receiver": "local-log",
        "commonLabels": {"alertname": "Mssql2pgLagHigh", "table": "dbo.orders"},
        "alerts": [{"status": "firing", "labels": {"alertname": "Mssql2pgLagHigh"}}],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/alerts",
        data=json.dumps(notification).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - http to localhost
        assert resp.status == 200
    line = json.loads(proc.stdout.readline())
    assert line["notification"] == notification
    assert line["message"] == "alert Mssql2pgLagHigh firing (1 alert(s))"
    assert line["path"] == "/alerts"


def test_alert_sink_rejects_a_body_that_is_not_json(alert_sink: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = alert_sink
    assert proc.stdout is not None
    proc.stdout.readline()

    def post_garbage() -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=b"not json", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310 - http to localhost
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert wait_for(post_garbage, timeout=20, what="alert sink answers") == 400
