"""``target.sslmode``/``sslrootcert``/``sslcert``/``sslkey``: as keys, or as libpq query parameters of the URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.errors import ConfigError
from tests.unit.config.conftest import MINIMAL

WriteConfig = Callable[[object], Path]


def _target(write_config: WriteConfig, target: dict[str, object], env: dict[str, str] | None = None) -> object:
    return load_config(write_config({**MINIMAL, "target": target}), env=env or {}).target


def test_the_default_is_prefer_as_in_libpq(write_config: WriteConfig) -> None:
    target = _target(write_config, {"url": "postgresql://w@pg/dw"})

    assert getattr(target, "sslmode") == "prefer"  # noqa: B009
    assert getattr(target, "sslrootcert") is None  # noqa: B009


def test_url_query_parameters_become_the_keys_and_leave_the_url(write_config: WriteConfig) -> None:
    url = "postgresql://w@pg:5432/dw?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem"

    target = load_config(write_config({**MINIMAL, "target": {"url": url}}), env={}).target

    assert (target.sslmode, target.sslrootcert) == ("verify-full", "/ca.pem")
    assert (target.sslcert, target.sslkey) == (Path("/c.pem"), Path("/k.pem"))
    assert target.url == "postgresql+pg8000://w@pg:5432/dw"


def test_keys_and_environment_set_tls(write_config: WriteConfig) -> None:
    target = load_config(
        write_config({**MINIMAL, "target": {"url": "postgresql://w@pg/dw", "sslrootcert": "system"}}),
        env={"MSSQL2PG__TARGET__SSLMODE": "verify-ca"},
    ).target

    assert (target.sslmode, target.sslrootcert) == ("verify-ca", "system")


def test_a_url_parameter_contradicting_the_key_is_refused(write_config: WriteConfig) -> None:
    data = {**MINIMAL, "target": {"url": "postgresql://w@pg/dw?sslmode=require", "sslmode": "disable"}}

    with pytest.raises(ConfigError, match=r"target\.sslmode is 'disable' but the target URL says sslmode=require"):
        load_config(write_config(data), env={})


def test_an_unknown_sslmode_is_refused(write_config: WriteConfig) -> None:
    data = {**MINIMAL, "target": {"url": "postgresql://w@pg/dw?sslmode=verify"}}

    with pytest.raises(ConfigError, match=r"target\.sslmode"):
        load_config(write_config(data), env={})


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_verification_without_a_ca_is_refused(write_config: WriteConfig, mode: str) -> None:
    """libpq would read ~/.postgresql/root.crt; mssql2pg reads no default file, so the CA must be named."""
    data = {**MINIMAL, "target": {"url": f"postgresql://w@pg/dw?sslmode={mode}"}}

    with pytest.raises(ConfigError, match=rf"sslmode {mode} needs target\.sslrootcert"):
        load_config(write_config(data), env={})
