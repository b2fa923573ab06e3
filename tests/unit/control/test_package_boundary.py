"""The control package sits below sink, pipeline and the CLI: they import it, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import mssql2pg.control

FORBIDDEN = ("mssql2pg.sink", "mssql2pg.pipeline", "mssql2pg.cli", "mssql2pg.dlq", "mssql2pg.demo")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_control_imports_nothing_from_sink_pipeline_or_cli() -> None:
    package = Path(mssql2pg.control.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) > 1
    offending = {
        f"{path.name}: {name}"
        for path in modules
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not offending
