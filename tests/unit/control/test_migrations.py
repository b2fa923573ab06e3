"""Numbered migrations of the control schema, driven with a fake connection (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from mssql2pg.control import migrations
from mssql2pg.control import statements as sql
from mssql2pg.errors import IncompatibleTargetError


class FakeConnection:
    """Answers the two questions ensure_control_schema asks (is there a schema_version table, which version does
    it record) and records every statement it is sent."""

    def __init__(self, version: int | None) -> None:
        self.version = version  # None: no control schema at all
        self.statements: list[str] = []

    def run(self, statement: str, **params: Any) -> list[list[Any]]:
        self.statements.append(statement)
        if statement == sql.CONTROL_TABLE_EXISTS:
            return [[self.version is not None]]
        if statement == sql.SELECT_SCHEMA_VERSION:
            return [[self.version]] if self.version else []
        if statement == sql.SET_SCHEMA_VERSION:
            self.version = params["version"]
        return []

    def ddl(self) -> list[str]:
        probes = {sql.CONTROL_LOCK, sql.CONTROL_TABLE_EXISTS, sql.SELECT_SCHEMA_VERSION, sql.SET_SCHEMA_VERSION}
        return [s for s in self.statements if s not in probes]


def _statements_from(version: int) -> list[str]:
    return [s for m in migrations.MIGRATIONS if m.version > version for s in m.statements]


def test_versions_are_numbered_from_one_and_increase() -> None:
    """Strictly increasing from 1. Not necessarily without gaps: branches reserve their numbers (the snapshot
    work holds 5 while schema evolution added 6), and ensure_control_schema applies every version above the
    installed one in order, whatever the numbers in between."""
    versions = [m.version for m in migrations.MIGRATIONS]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert migrations.MIGRATIONS[-1].version == migrations.CONTROL_VERSION


def test_every_migration_statement_is_idempotent() -> None:
    """Targets of the release that added ``resume_after`` record version 1 with the column already there."""
    for migration in migrations.MIGRATIONS:
        assert migration.statements, migration
        for statement in migration.statements:
            assert "IF NOT EXISTS" in statement or "IF EXISTS" in statement, (migration.version, statement)


def test_fresh_target_gets_every_migration_in_order_under_the_lock() -> None:
    conn = FakeConnection(version=None)
    assert migrations.ensure_control_schema(conn) == [m.version for m in migrations.MIGRATIONS]
    assert conn.statements[0] == sql.CONTROL_LOCK
    assert conn.ddl() == _statements_from(0)
    assert conn.version == migrations.CONTROL_VERSION


@pytest.mark.parametrize("installed", [m.version for m in migrations.MIGRATIONS])
def test_existing_target_gets_only_the_missing_migrations(installed: int) -> None:
    conn = FakeConnection(version=installed)
    applied = migrations.ensure_control_schema(conn)
    assert applied == [m.version for m in migrations.MIGRATIONS if m.version > installed]
    assert conn.statements[0] == sql.CONTROL_LOCK
    assert conn.ddl() == _statements_from(installed)
    assert conn.version == migrations.CONTROL_VERSION
    assert (sql.SET_SCHEMA_VERSION in conn.statements) == bool(applied)  # an up-to-date target is not written


def test_newer_target_is_refused_before_anything_is_changed() -> None:
    conn = FakeConnection(version=migrations.CONTROL_VERSION + 1)
    with pytest.raises(IncompatibleTargetError, match=f"version {migrations.CONTROL_VERSION + 1}"):
        migrations.ensure_control_schema(conn)
    assert conn.ddl() == []
    assert sql.SET_SCHEMA_VERSION not in conn.statements
