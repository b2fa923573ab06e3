# ruff: noqa: S105 - fake passwords are the subject of these tests
from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from mssql2pg.config import load_config
from mssql2pg.errors import ConfigError
from tests.unit.config.conftest import MINIMAL

WriteConfig = Callable[[object], Path]
SECRET = "s3cr3t-P@ss:word/x"


def _everything_printable(config: object) -> str:
    parts = [repr(config), str(config)]
    for name in ("source", "target"):
        section = getattr(config, name)
        parts += [repr(section), str(section), section.redacted_url(), repr(section.sqlalchemy_url())]
        parts.append(str(section.sqlalchemy_url()))
    dump = getattr(config, "model_dump_json")()  # noqa: B009 - keep mypy out of pydantic's signature
    return "\n".join([*parts, dump])


def test_password_from_environment_reaches_the_engine_url_only(write_config: WriteConfig) -> None:
    config = load_config(write_config(MINIMAL), env={"MSSQL2PG__SOURCE__PASSWORD": SECRET})

    url = config.source.sqlalchemy_url()
    assert isinstance(url, URL)
    assert url.password == SECRET
    assert url.username == "cdc_reader"
    assert url.drivername == "mssql+pytds"
    assert SECRET not in _everything_printable(config)
    assert config.source.redacted_url() == "mssql+pytds://cdc_reader:***@mssql:1433/shop"


def test_password_from_a_docker_secret_file_strips_one_newline(write_config: WriteConfig, tmp_path: Path) -> None:
    secret_file = tmp_path / "pg_password"
    secret_file.write_text(SECRET + "\n\n", encoding="utf-8")

    config = load_config(write_config(MINIMAL), env={"MSSQL2PG__TARGET__PASSWORD_FILE": str(secret_file)})

    assert config.target.sqlalchemy_url().password == SECRET + "\n"  # only ONE trailing newline is stripped
    assert config.target.sqlalchemy_url().drivername == "postgresql+pg8000"


def test_password_file_with_crlf(write_config: WriteConfig, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_bytes(SECRET.encode() + b"\r\n")

    config = load_config(write_config(MINIMAL), env={"MSSQL2PG__SOURCE__PASSWORD_FILE": str(secret_file)})

    assert config.source.sqlalchemy_url().password == SECRET


def test_missing_password_file_is_a_config_error(write_config: WriteConfig, tmp_path: Path) -> None:
    missing = tmp_path / "absent"

    with pytest.raises(ConfigError, match=r"source\.password_file.*absent"):
        load_config(write_config(MINIMAL), env={"MSSQL2PG__SOURCE__PASSWORD_FILE": str(missing)})


def test_password_inside_the_url_is_treated_as_a_secret(write_config: WriteConfig) -> None:
    data = {
        **MINIMAL,
        "target": {"url": f"postgresql://warehouse:{SECRET.replace('@', '%40').replace('/', '%2F')}@pg/dw"},
    }

    config = load_config(write_config(data), env={})

    assert config.target.sqlalchemy_url().password == SECRET
    assert SECRET not in _everything_printable(config)
    assert "%40" not in config.target.redacted_url()
    assert config.target.redacted_url() == "postgresql+pg8000://warehouse:***@pg/dw"


def test_environment_password_wins_over_file_password(write_config: WriteConfig) -> None:
    data = {**MINIMAL, "source": {**MINIMAL["source"], "password": "from-file"}}  # type: ignore[dict-item]

    config = load_config(write_config(data), env={"MSSQL2PG__SOURCE__PASSWORD": "from-env"})

    assert config.source.sqlalchemy_url().password == "from-env"


def test_environment_password_file_wins_over_file_password(write_config: WriteConfig, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-secret-file", encoding="utf-8")
    data = {**MINIMAL, "source": {**MINIMAL["source"], "password": "from-file"}}  # type: ignore[dict-item]

    config = load_config(write_config(data), env={"MSSQL2PG__SOURCE__PASSWORD_FILE": str(secret_file)})

    assert config.source.sqlalchemy_url().password == "from-secret-file"


def test_password_and_password_file_in_the_same_place_is_an_error(write_config: WriteConfig, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("x", encoding="utf-8")
    data = {**MINIMAL, "source": {**MINIMAL["source"], "password": "a", "password_file": str(secret_file)}}  # type: ignore[dict-item]

    with pytest.raises(ConfigError, match=r"source.*password.*password_file"):
        load_config(write_config(data), env={})


def test_secrets_never_appear_in_validation_errors(write_config: WriteConfig) -> None:
    data = {
        **MINIMAL,
        "source": {"url": f"mssql+pytds://u:{SECRET.replace('@', '%40').replace('/', '%2F')}@h/db", "bogus": 1},
        "target": {"url": "postgresql://w@pg/dw", "password": ["not", "a", "string", SECRET]},
    }

    with pytest.raises(ConfigError) as caught:
        load_config(write_config(data), env={})

    text = str(caught.value) + repr(caught.value) + str(caught.value.hint)
    assert "target.password" in text
    assert "source.bogus" in text or "'bogus'" in text
    assert SECRET not in text
    assert "s3cr3t" not in text


def test_secrets_lists_every_secret_for_log_redaction(write_config: WriteConfig) -> None:
    data = {**MINIMAL, "target": {"url": "postgresql://w:urlpw@pg/dw"}}

    config = load_config(write_config(data), env={"MSSQL2PG__SOURCE__PASSWORD": SECRET})

    assert set(config.secrets()) == {SECRET, "urlpw"}


@pytest.mark.parametrize(
    ("section", "url", "message"),
    [
        ("source", "mysql://u@h/db", "mssql"),
        ("source", "mssql+pyodbc://u@h/db", "pytds"),
        ("target", "mssql+pytds://u@h/db", "postgresql"),
        ("target", "not a url", "URL"),
        ("target", "postgresql+psycopg://u@h/db", "pg8000"),
    ],
)
def test_unsupported_urls(write_config: WriteConfig, section: str, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.url(.|\n)*{message}"):
        load_config(write_config({**MINIMAL, section: {"url": url}}), env={})


@pytest.mark.parametrize(
    ("url", "driver", "backend"),
    [
        ("mssql://u@h/db", "mssql+pytds", "mssql"),
        ("mssql+pytds://u@h:1433/db", "mssql+pytds", "mssql"),
        ("postgresql://u@h/db", "postgresql+pg8000", "postgresql"),
        ("postgres://u@h/db", "postgresql+pg8000", "postgresql"),
        ("postgresql+pg8000://u@h/db", "postgresql+pg8000", "postgresql"),
    ],
)
def test_source_driver_mapping(write_config: WriteConfig, url: str, driver: str, backend: str) -> None:
    config = load_config(write_config({**MINIMAL, "source": {"url": url}}), env={})

    assert config.source.sqlalchemy_url().drivername == driver
    assert config.source.backend == backend


def test_url_query_parameters_survive(write_config: WriteConfig) -> None:
    data = {**MINIMAL, "source": {"url": "mssql+pytds://u@h/db?autocommit=true"}}

    config = load_config(write_config(data), env={"MSSQL2PG__SOURCE__PASSWORD": "pw"})

    assert dict(config.source.sqlalchemy_url().query) == {"autocommit": "true"}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("application_name=x&connect_timeout=3", "application_name, connect_timeout"),
        ("sslmode=require&sslcrl=/x", "sslcrl"),
    ],
)
def test_a_target_url_with_unknown_query_parameters_is_refused_not_ignored(
    write_config: WriteConfig, query: str, named: str
) -> None:
    """pg8000 takes no URL query: a parameter other than libpq's TLS ones would be dropped without a word."""
    data = {**MINIMAL, "target": {"url": f"postgresql://w@pg/dw?{query}"}}

    with pytest.raises(
        ConfigError, match=r"target: .*would be ignored; only sslmode, sslrootcert, sslcert, sslkey"
    ) as e:
        load_config(write_config(data), env={})

    assert f"query parameter(s) {named} that would be ignored" in e.value.args[0]


def test_pg8000_connect_params_for_the_target(write_config: WriteConfig) -> None:
    config = load_config(write_config(MINIMAL), env={"MSSQL2PG__TARGET__PASSWORD": SECRET})

    params = config.target.pg8000_params()

    assert params["user"] == "warehouse"
    assert params["password"] == SECRET
    assert params["host"] == "postgres"
    assert params["port"] == 5432
    assert params["database"] == "dw"
    assert params["timeout"] == config.target.connect_timeout


@pytest.mark.parametrize(
    ("section", "url", "dialect", "driver"),
    [
        ("source", "mssql://r@sql:1433/shop", "mssql", "pytds"),
        ("source", "postgresql://r@pg/shop", "postgresql", "pg8000"),
        ("target", "postgresql://w@pg/dw", "postgresql", "pg8000"),
    ],
)
def test_engine_urls_select_installed_drivers(
    write_config: WriteConfig, section: str, url: str, dialect: str, driver: str
) -> None:
    """create_engine does not connect, but it does import the dialect and driver the URL names."""
    config = load_config(write_config({**MINIMAL, section: {"url": url}}), env={})

    engine = create_engine(getattr(config, section).sqlalchemy_url())
    try:
        assert (engine.dialect.name, engine.dialect.driver) == (dialect, driver)
    finally:
        engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(alphabet=string.ascii_letters + string.digits + "!$&()*+,;=~-_.", min_size=12, max_size=30))
def test_no_password_reaches_an_error_message(write_config: WriteConfig, password: str) -> None:
    escaped = quote(password, safe="")
    # A password that is part of the message's own words (a valid key such as 'password_file', the file's
    # path) is found in any message: not a leak.
    words = str(_bad_config_error(write_config, "0" * 12).value)
    assume(password not in words and escaped not in words)

    caught = _bad_config_error(write_config, password)

    text = str(caught.value)
    assert "source.connect_timeout" in text
    assert "target.bogus" in text or "'bogus'" in text
    assert password not in text
    assert escaped not in text
    # pydantic's own ValidationError echoes inputs: it must not ride along as cause or context
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def _bad_config_error(write_config: WriteConfig, password: str) -> pytest.ExceptionInfo[ConfigError]:
    """The error for a file with two mistakes, the password in the source URL, the target and a bad key."""
    data = {
        **MINIMAL,
        "source": {"url": f"mssql+pytds://u:{quote(password, safe='')}@h/db", "connect_timeout": "never"},
        "target": {"url": "postgresql://w@pg/dw", "password": password, "bogus": password},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(data), env={"MSSQL2PG__TARGET__PASSWORD": password})
    return caught


def test_engine_connect_args_carry_the_login_timeout(write_config: WriteConfig) -> None:
    data = {**MINIMAL, "source": {"url": "mssql://r@sql/shop", "connect_timeout": "5s"}}

    config = load_config(write_config(data), env={})

    assert config.source.engine_connect_args() == {"login_timeout": 5, "appname": "mssql2pg"}
    assert "timeout" not in config.target.engine_connect_args()
