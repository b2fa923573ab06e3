"""A minimal stand-in for SQL Server's CDC catalog in PostgreSQL: only what the reader's statements touch.

It exists so the reader's real SQL (keyset pages, catalog joins, bytea LSNs, quoted ``__$`` names, LIMIT) runs
against a real database through pg8000 while the full emulator (``mssql2pg.emulator``) is not available. It
writes change rows directly, as SQL Server's capture job would: one commit LSN per transaction, one seqval per
change, ``__$command_id`` counting per transaction, an update pair sharing seqval and command id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pg8000.native

from mssql2pg.positions import Lsn

_SCHEMA = r"""
CREATE SCHEMA cdc;
CREATE SCHEMA sys;
CREATE TABLE sys.schemas (schema_id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE sys.tables (object_id int PRIMARY KEY, schema_id int NOT NULL, name text NOT NULL);
CREATE TABLE sys.types (user_type_id int PRIMARY KEY, system_type_id int NOT NULL, name text NOT NULL);
CREATE TABLE sys.columns (object_id int, column_id int, name text, user_type_id int, max_length int,
                          "precision" int, scale int, is_nullable boolean, collation_name text,
                          PRIMARY KEY (object_id, column_id));
CREATE TABLE cdc.change_tables (object_id int PRIMARY KEY, source_object_id int, capture_instance text UNIQUE,
                                start_lsn bytea, supports_net_changes boolean, create_date timestamp);
CREATE TABLE cdc.captured_columns (object_id int, column_name text, column_id int, column_type text,
                                   column_ordinal int);
CREATE TABLE cdc.index_columns (object_id int, column_name text, index_ordinal int, column_id int);
CREATE TABLE cdc.lsn_time_mapping (start_lsn bytea PRIMARY KEY, tran_end_time timestamp, tran_id bytea);
CREATE FUNCTION sys.fn_cdc_get_max_lsn() RETURNS bytea LANGUAGE sql
    AS 'SELECT start_lsn FROM cdc.lsn_time_mapping ORDER BY start_lsn DESC LIMIT 1';
CREATE FUNCTION sys.fn_cdc_get_min_lsn(ci text) RETURNS bytea LANGUAGE sql
    AS $$SELECT coalesce((SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = ci),
                         '\x00000000000000000000'::bytea)$$;
INSERT INTO sys.schemas VALUES (1, 'dbo');
INSERT INTO sys.types VALUES (56, 56, 'int'), (231, 231, 'nvarchar'), (106, 106, 'decimal'), (104, 104, 'bit');
"""

# SQL Server type → (PostgreSQL type of the change-table column, sys.types id, bytes per character)
_TYPES = {"int": ("integer", 56), "nvarchar": ("text", 231), "decimal": ("numeric", 106), "bit": ("boolean", 104)}


@dataclass(frozen=True)
class Col:
    name: str
    sql_type: str
    max_length: int | None = None  # bytes, as sys.columns has it
    precision: int = 0
    scale: int = 0
    nullable: bool = True


@dataclass
class MiniCdc:
    conn: pg8000.native.Connection
    _next_lsn: int = 0x0000002D_00000580_0001
    _next_id: int = 100
    instances: dict[str, tuple[Col, ...]] = field(default_factory=dict)

    def install(self) -> None:
        for statement in _SCHEMA.split(";\n"):
            if statement.strip():
                self.conn.run(statement)

    def lsn(self) -> Lsn:
        self._next_lsn += 1
        return Lsn.from_int(self._next_lsn)

    def enable_table(self, table: str, columns: Sequence[Col], key: Sequence[str], instance: str | None = None) -> str:
        """Create the source table's catalog rows and a change table; returns the capture instance name."""
        ci = instance or f"dbo_{table}"
        self._next_id += 2
        source_id, ct_id = self._next_id, self._next_id + 1
        self.conn.run("INSERT INTO sys.tables VALUES (:i, 1, :n) ON CONFLICT DO NOTHING", i=source_id, n=table)
        for column_id, col in enumerate(columns, start=1):
            self.conn.run(
                "INSERT INTO sys.columns VALUES (:o, :c, :n, :t, :m, :p, :s, :nl)",
                o=source_id,
                c=column_id,
                n=col.name,
                t=_TYPES[col.sql_type][1],
                m=col.max_length if col.max_length is not None else 4,
                p=col.precision,
                s=col.scale,
                nl=col.nullable,
            )
            self.conn.run(
                "INSERT INTO cdc.captured_columns VALUES (:o, :n, :c, :t, :c)",
                o=ct_id,
                n=col.name,
                c=column_id,
                t=col.sql_type,
            )
        for ordinal, name in enumerate(key, start=1):
            column_id = next(i for i, c in enumerate(columns, start=1) if c.name == name)
            self.conn.run(
                "INSERT INTO cdc.index_columns VALUES (:o, :n, :i, :c)", o=ct_id, n=name, i=ordinal, c=column_id
            )
        start = self.lsn()
        self.conn.run(
            "INSERT INTO cdc.change_tables VALUES (:o, :s, :ci, :l, false, :d)",
            o=ct_id,
            s=source_id,
            ci=ci,
            l=start.raw,
            d=dt.datetime(2024, 1, 1),
        )
        cols = ", ".join(f'"{c.name}" {_TYPES[c.sql_type][0]}' for c in columns)
        self.conn.run(
            f'CREATE TABLE cdc."{ci}_CT" ("__$start_lsn" bytea NOT NULL, "__$end_lsn" bytea, '
            f'"__$seqval" bytea NOT NULL, "__$operation" int NOT NULL, "__$update_mask" bytea, {cols}, '
            f'"__$command_id" int, PRIMARY KEY ("__$start_lsn", "__$command_id", "__$seqval", "__$operation"))'
        )
        self.instances[ci] = tuple(columns)
        return ci

    def commit(self, changes: Sequence[tuple[str, int, Sequence[Any]]]) -> Lsn:
        """Capture one source transaction: ``(capture instance, operation, values)`` in order. An op 3 followed by
        op 4 is an update pair (same seqval and command id). Returns the commit LSN."""
        seqvals = []
        command_id = 0
        for i, (_, op, _) in enumerate(changes):
            if op == 4 and i > 0 and changes[i - 1][1] == 3:
                seqvals.append((seqvals[-1][0], command_id))
                continue
            command_id += 1
            seqvals.append((self.lsn(), command_id))
        commit = self.lsn()
        for (ci, op, values), (seqval, cmd) in zip(changes, seqvals, strict=True):
            cols = self.instances[ci]
            names = ", ".join(f'"{c.name}"' for c in cols)
            marks = ", ".join(f":v{i}" for i in range(len(cols)))
            self.conn.run(
                f'INSERT INTO cdc."{ci}_CT" ("__$start_lsn", "__$seqval", "__$operation", "__$update_mask", '
                f'"__$command_id", {names}) VALUES (:l, :s, :op, :m, :cmd, {marks})',
                l=commit.raw,
                s=seqval.raw,
                op=op,
                m=b"\x01",
                cmd=cmd,
                **{f"v{i}": v for i, v in enumerate(values)},
            )
        self.map_time(commit, bytes([commit.to_int() % 256]) * 4)
        return commit

    def bulk_insert(self, ci: str, rows: int) -> Lsn:
        """One transaction inserting ``rows`` rows ``(i, 'row i')`` (columns id, name) in one statement."""
        first = self._next_lsn + 1
        self._next_lsn += rows
        commit = self.lsn()
        self.conn.run(
            f'INSERT INTO cdc."{ci}_CT" ("__$start_lsn", "__$seqval", "__$operation", "__$update_mask", '
            f'"__$command_id", "id", "name") '
            "SELECT :l, '\\x0000'::bytea || int8send(CAST(:first AS bigint) + g), 2, '\\x03'::bytea, "
            "g + 1, g, 'row ' || g "
            "FROM generate_series(0, :n - 1) AS g",
            l=commit.raw,
            first=first,
            n=rows,
        )
        self.map_time(commit, b"\x0b\x0b")
        return commit

    def map_time(self, lsn: Lsn, tran_id: bytes) -> None:
        when = dt.datetime(2024, 1, 1) + dt.timedelta(milliseconds=lsn.to_int() % 100_000)
        self.conn.run("INSERT INTO cdc.lsn_time_mapping VALUES (:l, :t, :i)", l=lsn.raw, t=when, i=tran_id)

    def idle_marker(self) -> Lsn:
        """A dummy ``lsn_time_mapping`` row (tran_id 0x00), as capture writes when nothing happens."""
        lsn = self.lsn()
        self.map_time(lsn, b"\x00")
        return lsn

    def cleanup(self, ci: str, low_water_mark: Lsn) -> None:
        """Like ``sys.sp_cdc_cleanup_change_table``: raise the instance's start LSN, delete rows below it."""
        self.conn.run(
            "UPDATE cdc.change_tables SET start_lsn = :l WHERE capture_instance = :ci", l=low_water_mark.raw, ci=ci
        )
        self.conn.run(f'DELETE FROM cdc."{ci}_CT" WHERE "__$start_lsn" < :l', l=low_water_mark.raw)
