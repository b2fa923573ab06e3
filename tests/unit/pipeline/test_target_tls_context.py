"""What ``target_tls`` hands pg8000 for each libpq ``sslmode`` (the table in ``mssql2pg.pipeline.tls``)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mssql2pg.config import TargetConfig
from mssql2pg.errors import ConfigError
from mssql2pg.pipeline.tls import target_tls
from tests.fixtures.tls import make_ca


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert, _key = make_ca(tmp_path_factory.mktemp("ca"), "unit-ca")
    return cert


def _target(mode: str, rootcert: str | Path | None = None) -> TargetConfig:
    return TargetConfig(
        url="postgresql://w@pg/dw", sslmode=mode, sslrootcert=None if rootcert is None else str(rootcert)
    )


def _checks(context: object) -> tuple[ssl.VerifyMode, bool]:
    assert isinstance(context, ssl.SSLContext)
    return context.verify_mode, context.check_hostname


def test_disable_is_plain_without_fallback() -> None:
    tls = target_tls(_target("disable"))
    assert (tls.first, tls.fallback) == (False, None)


def test_allow_is_plain_first_then_unverified_tls() -> None:
    tls = target_tls(_target("allow"))
    assert tls.first is False
    assert _checks(tls.fallback) == (ssl.CERT_NONE, False)


def test_prefer_is_unverified_tls_first_then_plain() -> None:
    tls = target_tls(_target("prefer"))
    assert _checks(tls.first) == (ssl.CERT_NONE, False)
    assert tls.fallback is False


def test_require_encrypts_without_verification() -> None:
    tls = target_tls(_target("require"))
    assert _checks(tls.first) == (ssl.CERT_NONE, False)
    assert tls.fallback is None


def test_require_with_a_root_certificate_verifies_the_chain_as_libpq_does(ca_file: Path) -> None:
    assert _checks(target_tls(_target("require", ca_file)).first) == (ssl.CERT_REQUIRED, False)


def test_verify_ca_checks_the_chain_only(ca_file: Path) -> None:
    tls = target_tls(_target("verify-ca", ca_file))
    assert _checks(tls.first) == (ssl.CERT_REQUIRED, False)
    assert tls.fallback is None


def test_verify_full_checks_chain_and_host_name(ca_file: Path) -> None:
    tls = target_tls(_target("verify-full", ca_file))
    assert _checks(tls.first) == (ssl.CERT_REQUIRED, True)
    assert isinstance(tls.first, ssl.SSLContext)
    assert [ca["subject"] for ca in tls.first.get_ca_certs()] == [((("commonName", "unit-ca"),),)]


def test_a_missing_ca_file_is_a_configuration_error_naming_key_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=rf"target\.sslrootcert: cannot load {missing}: No such file"):
        target_tls(_target("verify-full", missing))


def test_a_missing_client_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    target = TargetConfig(url="postgresql://w@pg/dw", sslmode="require", sslcert=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match=r"target\.sslcert/sslkey: cannot load"):
        target_tls(target)
