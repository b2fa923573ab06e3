"""``source.encrypt``/``ca_file``/``check_hostname`` reach python-tds through the SQLAlchemy engine.

No SQL Server runs here: the engine is asked to connect, and the arguments it would hand python-tds's
``connect()`` are caught at SQLAlchemy's ``do_connect`` event, before any socket is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytds.tls
import pytest
import sqlalchemy as sa
import yaml

from mssql2pg.config import load_config
from mssql2pg.errors import ConfigError
from mssql2pg.pipeline.connections import source_engine
from tests.unit.config.conftest import MINIMAL

WriteConfig = Callable[[object], Path]


class _CaughtError(Exception):
    pass


def _driver_kwargs(engine: sa.Engine) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    @sa.event.listens_for(engine, "do_connect")
    def _catch(_dialect: object, _record: object, _cargs: object, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise _CaughtError

    with pytest.raises(_CaughtError):
        engine.connect()
    engine.dispose()
    return seen


def _config(write_config: WriteConfig, **source: object) -> Any:
    data = {**MINIMAL, "source": {"url": "mssql+pytds://cdc_reader@mssql.example:1433/shop", **source}}
    return load_config(write_config(data), env={"MSSQL2PG__SOURCE__PASSWORD": "pw"})


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    def write(data: object) -> Path:
        path = tmp_path / "mssql2pg.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "sql-ca.pem"
    path.write_text("not read by this test\n", encoding="utf-8")
    return path


def test_encryption_off_sends_no_tls_arguments(write_config: WriteConfig) -> None:
    kwargs = _driver_kwargs(source_engine(_config(write_config)))

    assert "cafile" not in kwargs
    assert kwargs["dsn"] == "mssql.example"  # the catch works: the real connect arguments are seen


def test_encryption_on_hands_python_tds_the_ca_and_the_host_name_check(
    write_config: WriteConfig, ca_file: Path
) -> None:
    kwargs = _driver_kwargs(source_engine(_config(write_config, encrypt="on", ca_file=str(ca_file))))

    assert kwargs["cafile"] == str(ca_file)
    assert kwargs["validate_host"] is True
    assert kwargs["enc_login_only"] is False


def test_the_host_name_check_can_be_turned_off_with_encrypt_on(write_config: WriteConfig, ca_file: Path) -> None:
    config = _config(write_config, encrypt="on", ca_file=str(ca_file), check_hostname=False)

    assert _driver_kwargs(source_engine(config))["validate_host"] is False


def test_strict_refuses_to_skip_the_host_name_check(write_config: WriteConfig, ca_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"strict checks the host name"):
        _config(write_config, encrypt="strict", ca_file=str(ca_file), check_hostname=False)


@pytest.mark.parametrize(("written", "meant"), [("off", "off"), ("on", "on"), ("'on'", "on")])
def test_yaml_on_and_off_unquoted_mean_the_words(tmp_path: Path, written: str, meant: str) -> None:
    """YAML 1.1 reads a bare ``on``/``off`` as a boolean; the key takes it as the word written."""
    path = tmp_path / "c.yaml"
    path.write_text(
        f"source:\n  url: mssql://u@h/db\n  encrypt: {written}\n  ca_file: /ca.pem\n"
        "target:\n  url: postgresql://w@pg/dw\ntables: [dbo.t]\n",
        encoding="utf-8",
    )
    assert load_config(path, env={}).source.encrypt == meant


def test_encryption_without_a_ca_is_refused(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"source\.encrypt on needs source\.ca_file"):
        _config(write_config, encrypt="on")


def test_encryption_for_the_emulator_source_is_refused(write_config: WriteConfig, ca_file: Path) -> None:
    data = {**MINIMAL, "source": {"url": "postgresql://u@pg/src", "encrypt": "on", "ca_file": str(ca_file)}}
    with pytest.raises(ConfigError, match=r"SQL Server only"):
        load_config(write_config(data), env={})


def test_encryption_without_pyopenssl_is_a_clear_error(
    write_config: WriteConfig, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pytds.tls, "OPENSSL_AVAILABLE", False)
    config = _config(write_config, encrypt="on", ca_file=str(ca_file))

    with pytest.raises(ConfigError, match=r"needs pyOpenSSL") as raised:
        source_engine(config)
    assert raised.value.hint is not None
    assert "pip install pyOpenSSL" in raised.value.hint
