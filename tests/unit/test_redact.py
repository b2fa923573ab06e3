"""One redactor: what a classified error keeps and what a log line shows are cleaned by the same function."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pg8000.exceptions
import pytds.tds_base as tds
import pytest
import structlog

from mssql2pg import classify as classify_module
from mssql2pg.classify import classify
from mssql2pg.observability import logging as log_module
from mssql2pg.observability.logging import configure_logging, get_logger
from mssql2pg.redact import clear_registered_secrets, redact_text, register_secret

URL_PASSWORD = "hunter2-in-url"  # noqa: S105 - fake secrets to hunt for
PAIR_PASSWORD = "hunter2-in-pair"  # noqa: S105
REGISTERED = "plainword-nobody-marks"  # no pattern could find this one: it must be registered

MESSAGES = {
    URL_PASSWORD: f"could not connect to postgresql://warehouse:{URL_PASSWORD}@pg:5432/dw",
    PAIR_PASSWORD: f"connect failed: host=pg user=w password={PAIR_PASSWORD} dbname=dw",
    REGISTERED: f"login failed near {REGISTERED} at line 1",
}


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    clear_registered_secrets()
    register_secret(REGISTERED)
    yield
    clear_registered_secrets()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "mssql2pg"]:
        root.removeHandler(handler)


def test_there_is_one_redactor() -> None:
    assert classify_module.scrub is redact_text
    assert log_module.redact_text is redact_text


@pytest.mark.parametrize(("secret", "message"), MESSAGES.items(), ids=["url", "pair", "registered"])
def test_a_classified_error_is_redacted(secret: str, message: str) -> None:
    for exc in (
        pg8000.exceptions.InterfaceError(message),
        pg8000.exceptions.DatabaseError({"S": "ERROR", "C": "28P01", "M": message}),
        tds.OperationalError(message),
        RuntimeError(message),
    ):
        result = classify(exc)
        assert secret not in str(result)
        assert "***" in str(result)


@pytest.mark.parametrize(("secret", "message"), MESSAGES.items(), ids=["url", "pair", "registered"])
def test_a_log_line_is_redacted(secret: str, message: str) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise RuntimeError(message)
    except RuntimeError:
        get_logger("test").exception(message, detail=message)
    text = out.getvalue()
    assert secret not in text
    line = json.loads(text)
    assert "***" in line["event"]
    assert "***" in line["detail"]
    assert "***" in line["exception_message"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # the forms the error scrubber of classify caught before the two were merged
        ("password: hunter22, then more", "hunter22"),
        ("Server=sql;Database=shop;User Id=sa;Password=hunter22;", "hunter22"),
        ('PWD="hunter 22"', "hunter 22"),
        ("mssql+pytds://sa:hunter22@sql:1433/shop", "hunter22"),
    ],
)
def test_forms_of_both_former_redactors(text: str, secret: str) -> None:
    assert secret not in redact_text(text)
