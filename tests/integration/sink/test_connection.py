"""connector_from_url: the Applier's connection factory from a target URL."""

from __future__ import annotations

import pytest

from mssql2pg.errors import ConfigError
from mssql2pg.sink.connection import APPLICATION_NAME, connector_from_url

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("prefix", ["postgresql://", "postgresql+pg8000://"])
def test_connects_with_either_url_spelling(target_url: str, prefix: str) -> None:
    connect = connector_from_url(target_url.replace("postgresql://", prefix))
    conn = connect()
    try:
        assert conn.run("SELECT current_setting('application_name')") == [[APPLICATION_NAME]]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "must be a postgresql:// URL"),
        ("postgresql://u@h", "names no database"),
        ("postgresql://u@h/db?sslmode=sometimes", "unknown sslmode"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        connector_from_url(url)
