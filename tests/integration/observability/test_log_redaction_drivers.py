"""No password reaches the logs, even inside real driver exceptions and the errors we wrap them in.

A private server requires a scram password for one role; connection attempts with a wrong password fail for
real in pg8000 and SQLAlchemy, and we log those failures the ways application code tends to.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pg8000.native
import pytest
import sqlalchemy
import structlog

from mssql2pg.errors import TransientError
from mssql2pg.localpg import LocalPostgres
from mssql2pg.observability.logging import configure_logging, get_logger
from mssql2pg.redact import clear_registered_secrets, register_secret

pytestmark = pytest.mark.integration

GOOD = "Corr3ct-Horse_battery"
WRONG = "Wr0ng-Pa55:w@rd/xyz"


@pytest.fixture
def password_server(fresh_server: LocalPostgres) -> LocalPostgres:
    conn = fresh_server.connect()
    try:
        conn.run("SET password_encryption = 'scram-sha-256'")
        conn.run(f"CREATE ROLE app LOGIN PASSWORD {pg8000.native.literal(GOOD)}")
        hba = fresh_server.datadir / "pg_hba.conf"
        hba.write_text("host all app 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        conn.run("SELECT pg_reload_conf()")
    finally:
        conn.close()
    return fresh_server


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    clear_registered_secrets()
    configure_logging("DEBUG", "json", stream=stream)
    yield stream
    clear_registered_secrets()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "mssql2pg"]:
        root.removeHandler(handler)


def test_the_server_really_checks_passwords(password_server: LocalPostgres) -> None:
    ok = pg8000.native.Connection(
        user="app", password=GOOD, host="127.0.0.1", port=password_server.port, database="postgres"
    )
    ok.close()
    with pytest.raises(pg8000.exceptions.DatabaseError, match="password authentication failed"):
        pg8000.native.Connection(user="app", password=WRONG, host="127.0.0.1", port=password_server.port)


def test_failed_logins_logged_every_which_way_never_show_the_password(
    password_server: LocalPostgres, out: io.StringIO
) -> None:
    log = get_logger("target")
    port = password_server.port
    sa_url = sqlalchemy.URL.create(
        "postgresql+pg8000", username="app", password=WRONG, host="127.0.0.1", port=port, database="postgres"
    )
    url = sa_url.render_as_string(hide_password=False)  # what a careless log line or message would contain
    kwargs = {"user": "app", "password": WRONG, "host": "127.0.0.1", "port": port, "database": "postgres"}

    try:
        pg8000.native.Connection(**kwargs)
    except pg8000.exceptions.DatabaseError:
        log.exception("pg8000 connect failed", connect_args=kwargs)

    engine = sqlalchemy.create_engine(sa_url)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as exc:
        log.exception("sqlalchemy connect failed", url=url, engine=repr(engine))
        try:
            # The pattern we want to survive: an error message that quotes the connection string.
            raise TransientError(f"cannot connect to {url} ({kwargs})", hint="check the target") from exc
        except TransientError as wrapped:
            log.error("giving up this attempt", exc_info=wrapped)
            logging.getLogger("mssql2pg.legacy").exception("stdlib path: %s", wrapped)
    finally:
        engine.dispose()

    text = out.getvalue()
    assert text.count('"exception_type"') == 4
    assert "password authentication failed" in text
    assert WRONG not in text
    assert "Wr0ng-Pa55" not in text
    assert "rd/xyz" not in text
    assert "Wr0ng-Pa55%3Aw%40rd%2Fxyz" not in text  # the URL-encoded form


def test_registered_secret_is_scrubbed_where_no_pattern_would_find_it(out: io.StringIO) -> None:
    register_secret(WRONG)
    try:
        raise ValueError(f"the server rejected {WRONG} for no reason a regex could guess")
    except ValueError:
        get_logger("source").exception("odd failure", note=f"value was {WRONG}", items=[WRONG, 1])
    assert WRONG not in out.getvalue()
    assert "odd failure" in out.getvalue()
