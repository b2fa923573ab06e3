from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[object], Path]:
    """Write a YAML config file (from a dict, or verbatim from a str) and return its path."""

    def write(content: object) -> Path:
        path = tmp_path / "mssql2pg.yaml"
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        path.write_text(text, encoding="utf-8")
        return path

    return write


MINIMAL = {
    "source": {"url": "mssql+pytds://cdc_reader@mssql:1433/shop"},
    "target": {"url": "postgresql://warehouse@postgres:5432/dw"},
    "tables": ["dbo.orders", "dbo.customers", "sales.*"],
}
