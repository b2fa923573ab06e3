"""``sslmode=verify-full`` through the command line, as the outside check that found it silently dropped used it.

The target is a server that accepts ``hostssl`` connections only (tests/fixtures/tls.py); its certificate is
signed by ``our CA`` and names 127.0.0.1 only. Each command runs as a subprocess, exactly as users start it:

* a certificate it must not trust (another CA, or a host name the certificate does not name) ends ``check`` and
  ``status`` with one line naming the refused certificate, exit code 2, no traceback; ``run`` retries it like any
  connection fault and, once ``retry.max_attempts`` is spent, exits with that one line; nothing is written to the
  target, not even the control schema;
* the right CA works: ``check`` passes and ``run`` replicates (over TLS, as the server accepts nothing else).

Both ways of writing the setting are covered: libpq's query in ``target.url``, and the ``target.ssl*`` keys.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import PipelineProcess, run_cli, write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.tls import TlsServer
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.e2e

ROW = "over verified tls"


@pytest.fixture
def source(emulated_source_url: str) -> str:
    """The emulated source with one CDC-enabled table holding one row."""
    src = connect(emulated_source_url)
    try:
        src.run("CREATE SCHEMA dbo")
        src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
        enable_table(src, "dbo", "t")
        src.run("INSERT INTO dbo.t VALUES (1, :v)", v=ROW)
    finally:
        src.close()
    return emulated_source_url


class Target:
    """A fresh database on the TLS-only server, and configurations that reach it with ``verify-full``."""

    def __init__(self, tls: TlsServer, tmp_path: Path, source_url: str) -> None:
        self.tls = tls
        self.tmp_path = tmp_path
        self.source_url = source_url
        self.database = tls.server.create_database("dw")

    def config(self, ca: Path, *, host: str = "127.0.0.1", as_keys: bool = False, **extra: object) -> Path:
        url = self.tls.server.url(self.database).replace("127.0.0.1", host)
        path = self.tmp_path / "tls.yaml"
        if not as_keys:
            return write_config(
                path, self.source_url, f"{url}?sslmode=verify-full&sslrootcert={ca}", ["dbo.t"], **extra
            )
        target = {"url": url, "sslmode": "verify-full", "sslrootcert": str(ca)}
        return write_config(path, self.source_url, url, ["dbo.t"], target=target, **extra)

    def relations(self) -> list[list[object]]:
        """What mssql2pg would have created in the target: the replicated table and the control schema."""
        conn = self.tls.server.connect(self.database)
        try:
            return conn.run("SELECT to_regclass('dbo.t'), to_regnamespace('mssql2pg')")
        finally:
            conn.close()


@pytest.fixture
def target(tls_server: TlsServer, tmp_path: Path, source: str) -> Target:
    return Target(tls_server, tmp_path, source)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line on stderr; no traceback anywhere."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert lines, result.stdout
    assert lines[-1].startswith("error: "), result.stderr
    return lines[-1]


# (what is wrong, how the configuration is built, what the error line must name)
REFUSED = [
    ("another CA", {"ca": "other"}, "unable to get local issuer certificate"),
    ("another host name", {"ca": "ours", "host": "localhost"}, "localhost"),
]


def _refused_config(target: Target, case: dict[str, str], *, as_keys: bool, **extra: object) -> Path:
    ca = target.tls.other_ca if case["ca"] == "other" else target.tls.our_ca
    return target.config(ca, host=case.get("host", "127.0.0.1"), as_keys=as_keys, **extra)


@pytest.mark.parametrize("as_keys", [False, True], ids=["url-query", "target-keys"])
@pytest.mark.parametrize(("what", "case", "named"), REFUSED, ids=[r[0] for r in REFUSED])
@pytest.mark.parametrize("command", ["check", "status"])
def test_a_certificate_verify_full_refuses_ends_the_command_with_one_line(
    target: Target, command: str, what: str, case: dict[str, str], named: str, *, as_keys: bool
) -> None:
    result = run_cli(command, "--config", str(_refused_config(target, case, as_keys=as_keys)), timeout=120)

    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result)
    assert "cannot connect securely to the target database" in line, line
    assert "the source database" not in line, line  # the source is fine
    assert "certificate was refused" in line, line
    assert named in line, line
    assert "target.sslrootcert" in line, line  # what to check: the TLS settings, not whether the server is up
    assert target.relations() == [[None, None]]  # nothing written


@pytest.mark.parametrize(("what", "case", "named"), REFUSED, ids=[r[0] for r in REFUSED])
def test_run_retries_a_refused_certificate_then_stops_with_one_line_and_writes_nothing(
    target: Target, what: str, case: dict[str, str], named: str
) -> None:
    config = _refused_config(
        target, case, as_keys=False, retry={"max_attempts": 2, "initial": 0.1, "maximum": 0.2, "jitter": False}
    )

    result = run_cli("run", "--config", str(config), timeout=180)

    assert result.returncode != 0, result.stdout + result.stderr
    line = _one_line(result)
    assert "certificate" in line, line
    assert named in line, line
    assert "certificate was refused" in result.stdout + result.stderr  # each attempt logged, then retried
    assert target.relations() == [[None, None]]


@pytest.mark.parametrize("as_keys", [False, True], ids=["url-query", "target-keys"])
def test_check_passes_with_the_ca_that_signed_the_certificate(target: Target, *, as_keys: bool) -> None:
    result = run_cli("check", "--config", str(target.config(target.tls.our_ca, as_keys=as_keys)), timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_run_replicates_with_the_ca_that_signed_the_certificate(target: Target, tmp_path: Path) -> None:
    process = PipelineProcess(target.config(target.tls.our_ca, as_keys=True), tmp_path / "log")
    process.start()
    try:
        conn = target.tls.server.connect(target.database)
        try:
            rows = wait_for(lambda: _rows(conn), timeout=120, what="dbo.t replicated over verified TLS")
        finally:
            conn.close()
        assert rows == [[1, ROW]], process.log_text()
    finally:
        if process.alive():
            assert process.terminate() == 0, process.log_text()


def _rows(conn: pg8000.native.Connection) -> list[list[object]] | None:
    try:
        rows = conn.run("SELECT id, v FROM dbo.t")
    except pg8000.exceptions.DatabaseError:
        return None  # not created yet
    return rows or None


def test_an_unknown_query_parameter_of_the_target_url_ends_the_command_with_one_line_naming_it(tmp_path: Path) -> None:
    """Only libpq's TLS parameters are taken from ``target.url``: any other would be dropped without a word, as
    ``sslmode`` once was, so it is refused before anything is connected."""
    url = "postgresql://dw@127.0.0.1:1/dw?sslmode=verify-full&sslrootcert=/ca.pem&sslcompression=1"
    config = write_config(tmp_path / "c.yaml", "postgresql://cdc@127.0.0.1:1/shop", url, ["dbo.t"])

    result = run_cli("check", "--config", str(config), timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result)
    assert [text for text in result.stderr.splitlines() if text.strip()] == [line]
    assert "sslcompression" in line
    assert "only sslmode, sslrootcert, sslcert, sslkey" in line
