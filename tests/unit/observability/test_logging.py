"""Log format and secret redaction (patterns, registered secrets, exception text)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from mssql2pg.observability.logging import configure_logging, get_logger
from mssql2pg.redact import clear_registered_secrets, redact_text, register_secret

SECRET = "S3cr3t-p@ss/word!"  # noqa: S105 - a fake secret to hunt for


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    clear_registered_secrets()
    yield
    clear_registered_secrets()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "mssql2pg"]:
        root.removeHandler(handler)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql+pg8000://app:hunter22@db:5432/x", "hunter22"),
        ("mssql+pytds://sa:Str0ng!Pass@mssql:1433/shop?x=1", "Str0ng!Pass"),
        ("Driver={ODBC};Server=x;UID=sa;PWD=Pa55word;Database=y", "Pa55word"),
        ("Driver={ODBC};PWD={Pa;55w}ord};", "Pa;55w"),
        ("host=db user=app password=hunter22 dbname=x", "hunter22"),
        ("password='hunter 22'", "hunter 22"),
        ("{'user': 'app', 'password': 'hunter22'}", "hunter22"),
        ('{"user": "app", "api_key": "k-123456"}', "k-123456"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("https://x/api?token=abcdef123&y=2", "abcdef123"),
        ("postgresql://app:raw@pass/word@db:5432/x", "pass/word"),
    ],
)
def test_patterns_scrub_credentials(text: str, secret: str) -> None:
    cleaned = redact_text(text)
    assert secret not in cleaned
    assert "***" in cleaned


def test_registered_secret_is_removed_also_url_encoded() -> None:
    register_secret(SECRET)
    assert SECRET not in redact_text(f"oops {SECRET} here")
    assert "S3cr3t-p%40ss%2Fword%21" not in redact_text("in a url: S3cr3t-p%40ss%2Fword%21")


def test_json_line_has_the_required_fields_and_utc_timestamp() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    get_logger("applier").info(
        "row applied", table="dbo.orders", pk={"id": 1}, operation="insert", commit_lsn="0000002d:00000580:001d"
    )
    (line,) = json_lines(out)
    assert line["event"] == "row applied"
    assert line["level"] == "info"
    assert line["component"] == "applier"
    assert line["table"] == "dbo.orders"
    assert str(line["timestamp"]).endswith("Z")
    assert line["commit_lsn"] == "0000002d:00000580:001d"


def test_level_filters() -> None:
    out = io.StringIO()
    configure_logging("WARNING", "json", stream=out)
    get_logger("x").info("quiet")
    get_logger("x").warning("loud")
    assert [line["event"] for line in json_lines(out)] == ["loud"]


def test_exception_fields_and_secret_in_exception_message_are_redacted() -> None:
    register_secret(SECRET)
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise ConnectionError(f"could not connect to postgresql://app:{SECRET}@db/x (password={SECRET})")
    except ConnectionError:
        get_logger("reader").exception("connect failed", url=f"postgresql://app:{SECRET}@db/x", password=SECRET)
    raw = out.getvalue()
    assert SECRET not in raw
    (line,) = json_lines(out)
    assert line["exception_type"] == "builtins.ConnectionError"
    assert "could not connect" in str(line["exception_message"])
    assert "Traceback" in str(line["exception"])
    assert line["password"] == "***"  # noqa: S105


def test_stdlib_logging_goes_through_the_same_pipeline() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("sqlalchemy.pool").warning("lost connection to mssql+pytds://sa:hunter22@h/db")
    (line,) = json_lines(out)
    assert line["component"] == "sqlalchemy.pool"
    assert "hunter22" not in out.getvalue()


def test_console_format_is_readable_and_redacted() -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", stream=out)
    get_logger("runner").info("started", url="postgresql://u:hunter22@h/db")
    text = out.getvalue()
    assert "started" in text
    assert "runner" in text
    assert "hunter22" not in text
    assert not text.lstrip().startswith("{")


def test_auto_is_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)
    get_logger("runner").info("hello")
    assert json_lines(out)[0]["event"] == "hello"
