from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulator.backends import Backend, EmulatorBackend, MssqlBackend


@pytest.fixture(params=["emulator", "mssql"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The same conformance case against the emulator and (when configured) a real SQL Server."""
    b: Backend
    if request.param == "emulator":
        b = EmulatorBackend(request.getfixturevalue("emulated_source_url"))
        b.run(pg="CREATE SCHEMA IF NOT EXISTS dbo", tsql="")
    else:
        b = MssqlBackend(request.getfixturevalue("mssql_url"))
    try:
        yield b
    finally:
        b.close()
