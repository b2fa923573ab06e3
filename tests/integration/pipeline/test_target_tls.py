"""TLS to the target, against a server that accepts ``hostssl`` connections only (tests/fixtures/tls.py).

Each test states one promise of ``target.sslmode`` (libpq's meaning) and would fail if the connector ignored
the setting: the server's certificate chains to ``our CA`` and names 127.0.0.1 only.
"""

from __future__ import annotations

from pathlib import Path

import pg8000.native
import pytest

from mssql2pg.classify import classify, sqlstate
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.errors import TransientError
from mssql2pg.pipeline.connections import target_connector
from tests.e2e.pipeline_process import PipelineProcess, write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.tls import TlsServer
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _connect(tls: TlsServer, tmp_path: Path, query: str, host: str = "127.0.0.1") -> pg8000.native.Connection:
    target = tls.server.url().replace("127.0.0.1", host) + query
    config = load_config(write_config(tmp_path / "c.yaml", "mssql://u@mssql/db", target, ["dbo.t"]))
    return target_connector(config)()


def _encrypted(conn: pg8000.native.Connection) -> bool:
    rows = conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return bool(rows[0][0])


def test_verify_full_with_our_ca_connects_encrypted(tls_server: TlsServer, tmp_path: Path) -> None:
    conn = _connect(tls_server, tmp_path, f"?sslmode=verify-full&sslrootcert={tls_server.our_ca}")
    try:
        assert _encrypted(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["verify-full", "verify-ca", "require"])
def test_a_certificate_from_another_ca_is_refused_with_a_clear_transient_error(
    tls_server: TlsServer, tmp_path: Path, mode: str
) -> None:
    """``require`` with ``sslrootcert`` verifies the chain too, as in libpq."""
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the driver's exception, classified below
        _connect(tls_server, tmp_path, f"?sslmode={mode}&sslrootcert={tls_server.other_ca}")

    error = classify(raised.value)
    assert isinstance(error, TransientError)  # retried like any connection fault
    message = error.args[0]  # the one line; the hint is printed under it
    assert "\n" not in message
    assert "certificate" in message
    assert "unable to get local issuer certificate" in message


def test_verify_full_refuses_a_certificate_for_another_host_name(tls_server: TlsServer, tmp_path: Path) -> None:
    """``localhost`` reaches the same server, but its certificate names 127.0.0.1 only."""
    with pytest.raises(Exception) as raised:  # noqa: PT011 - classified below
        _connect(tls_server, tmp_path, f"?sslmode=verify-full&sslrootcert={tls_server.our_ca}", host="localhost")

    message = classify(raised.value).args[0]
    assert "certificate" in message
    assert "localhost" in message


def test_verify_ca_accepts_the_chain_whatever_the_host_name(tls_server: TlsServer, tmp_path: Path) -> None:
    conn = _connect(tls_server, tmp_path, f"?sslmode=verify-ca&sslrootcert={tls_server.our_ca}", host="localhost")
    try:
        assert _encrypted(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["require", "prefer", "allow"])
def test_modes_without_verification_connect_encrypted(tls_server: TlsServer, tmp_path: Path, mode: str) -> None:
    """``allow`` starts plain, is refused by pg_hba (hostssl only) and tries again with TLS."""
    conn = _connect(tls_server, tmp_path, f"?sslmode={mode}")
    try:
        assert _encrypted(conn)
    finally:
        conn.close()


def test_disable_is_refused_by_a_server_that_requires_tls(tls_server: TlsServer, tmp_path: Path) -> None:
    with pytest.raises(pg8000.exceptions.DatabaseError) as raised:
        _connect(tls_server, tmp_path, "?sslmode=disable")

    assert sqlstate(raised.value) == "28000"
    assert "no encryption" in str(classify(raised.value))


@pytest.mark.parametrize("mode", ["prefer", "allow"])
def test_prefer_and_allow_fall_back_to_plain_on_a_server_without_tls(
    target_url: str, tmp_path: Path, mode: str
) -> None:
    config = load_config(
        write_config(tmp_path / "c.yaml", "mssql://u@mssql/db", f"{target_url}?sslmode={mode}", ["dbo.t"])
    )
    conn = target_connector(config)()
    try:
        assert not _encrypted(conn)
    finally:
        conn.close()


def test_require_on_a_server_without_tls_is_a_clear_error(target_url: str, tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path / "c.yaml", "mssql://u@mssql/db", f"{target_url}?sslmode=require", ["dbo.t"])
    )
    with pytest.raises(pg8000.exceptions.InterfaceError) as raised:
        target_connector(config)()

    error = classify(raised.value)
    assert isinstance(error, TransientError)
    assert "does not offer TLS" in str(error)


def test_run_replicates_to_a_tls_only_target_with_verify_full(
    tls_server: TlsServer, emulated_source_url: str, tmp_path: Path
) -> None:
    """The whole pipeline as users start it: every target connection it opens goes through the connector."""
    src = connect(emulated_source_url)
    try:
        src.run("CREATE SCHEMA dbo")
        src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
        enable_table(src, "dbo", "t")
        src.run("INSERT INTO dbo.t VALUES (1, 'over tls')")
    finally:
        src.close()
    database = tls_server.server.create_database("dw")
    target = f"{tls_server.server.url(database)}?sslmode=verify-full&sslrootcert={tls_server.our_ca}"
    process = PipelineProcess(
        write_config(tmp_path / "run.yaml", emulated_source_url, target, ["dbo.t"]), tmp_path / "log"
    )
    process.start()
    try:
        conn = tls_server.server.connect(database)
        try:
            rows = wait_for(lambda: _replicated(conn), timeout=120, what="dbo.t replicated over TLS")
        finally:
            conn.close()
        assert rows == [[1, "over tls"]], process.log_text()
    finally:
        if process.alive():
            assert process.terminate() == 0, process.log_text()


def _replicated(conn: pg8000.native.Connection) -> list[list[object]] | None:
    try:
        rows = conn.run("SELECT id, v FROM dbo.t")
    except pg8000.exceptions.DatabaseError:
        return None  # the table is not created yet
    return rows or None


def test_run_does_not_replicate_to_a_server_whose_certificate_it_refuses(
    tls_server: TlsServer, emulated_source_url: str, tmp_path: Path
) -> None:
    """The gap the issue measured: with a CA that did not sign the server's certificate the pipeline used to
    connect and replicate anyway. Now it logs the refused certificate, retries, and writes nothing."""
    src = connect(emulated_source_url)
    try:
        src.run("CREATE SCHEMA dbo")
        src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
        enable_table(src, "dbo", "t")
        src.run("INSERT INTO dbo.t VALUES (1, 'must not arrive')")
    finally:
        src.close()
    database = tls_server.server.create_database("dw")
    target = f"{tls_server.server.url(database)}?sslmode=verify-full&sslrootcert={tls_server.other_ca}"
    process = PipelineProcess(
        write_config(tmp_path / "run.yaml", emulated_source_url, target, ["dbo.t"]), tmp_path / "log"
    )
    process.start()
    try:
        wait_for(
            lambda: "certificate was refused" in process.log_text(), timeout=60, what="the refused certificate logged"
        )
        assert process.alive()  # retrying, not stopped
    finally:
        process.terminate()
    conn = tls_server.server.connect(database)
    try:
        assert conn.run("SELECT to_regclass('dbo.t')") == [[None]]
    finally:
        conn.close()
