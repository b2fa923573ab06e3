"""Every SQL statement mssql2pg sends to the source, built with SQLAlchemy Core.

One place for all source SQL, so that the T-SQL can be reviewed in one file and snapshotted in one test
(``tests/unit/source/test_statements.py`` compiles each statement with the SQL Server dialect and compares it
with ``tests/unit/snapshots/*.sql``). The same constructs run on SQL Server (``mssql+pytds://``) and on the
emulator (``postgresql+pg8000://``); the dialect follows the engine. Values are always bound parameters;
identifiers always go through SQLAlchemy's quoting (forced with ``quote=True`` where SQL Server would not quote
on its own, e.g. ``__$start_lsn`` and ``<ci>_CT``).

Change rows are read from the change table ``cdc.<ci>_CT`` directly (Debezium's default "direct" mode), not
through ``cdc.fn_cdc_get_all_changes_<ci>``:

* the TVF validates its window against ``fn_cdc_get_min_lsn`` / ``fn_cdc_get_max_lsn`` and answers every
  problem with the same misleading error 313, which would surface mid-stream as an unclassifiable failure; we do
  our own, explicit gap check against ``sys.fn_cdc_get_min_lsn`` and raise an error that names the table;
* the TVF does not return ``__$command_id``, which current SQL Server documentation says is the correct order
  of operations inside a transaction (KB 3030352), and which we need for a resumable keyset;
* the change table's clustered index serves ``ORDER BY __$start_lsn, __$command_id, __$seqval, __$operation``
  with a seek, so each keyset page costs only its own rows.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    Select,
    String,
    and_,
    bindparam,
    column,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ClauseElement, ColumnClause, ColumnElement, Label, quoted_name
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

# ---------------------------------------------------------------------------------------------------------------
# Catalog tables (SQL Server's names and column names; the emulator provides the same surface).
# ---------------------------------------------------------------------------------------------------------------

change_tables = table(
    "change_tables",
    column("object_id", Integer),
    column("source_object_id", Integer),
    column("capture_instance", String),
    column("start_lsn", LargeBinary),
    column("supports_net_changes", Boolean),
    column("create_date", DateTime),
    column("role_name", String),
    column("index_name", String),
    column("filegroup_name", String),
    column("partition_switch", Boolean),
    schema="cdc",
)

ddl_history = table(
    "ddl_history",
    column("object_id", Integer),
    column("source_object_id", Integer),
    column("ddl_lsn", LargeBinary),
    schema="cdc",
)

captured_columns = table(
    "captured_columns",
    column("object_id", Integer),
    column("column_name", String),
    column("column_id", Integer),
    column("column_type", String),
    column("column_ordinal", Integer),
    schema="cdc",
)

index_columns = table(
    "index_columns",
    column("object_id", Integer),
    column("column_name", String),
    column("index_ordinal", Integer),
    column("column_id", Integer),
    schema="cdc",
)

lsn_time_mapping = table(
    "lsn_time_mapping",
    column("start_lsn", LargeBinary),
    column("tran_end_time", DateTime),
    column("tran_id", LargeBinary),
    schema="cdc",
)

sys_tables = table(
    "tables",
    column("object_id", Integer),
    column("schema_id", Integer),
    column("name", String),
    schema="sys",
)

sys_schemas = table(
    "schemas",
    column("schema_id", Integer),
    column("name", String),
    schema="sys",
)

sys_columns = table(
    "columns",
    column("object_id", Integer),
    column("column_id", Integer),
    column("name", String),
    column("user_type_id", Integer),
    column("max_length", Integer),
    column("precision", Integer),
    column("scale", Integer),
    column("is_nullable", Boolean),
    column("collation_name", String),
    schema="sys",
)

sys_default_constraints = table(
    "default_constraints",
    column("parent_object_id", Integer),
    column("parent_column_id", Integer),
    column("definition", String),
    schema="sys",
)

sys_types = table(
    "types",
    column("user_type_id", Integer),
    column("system_type_id", Integer),
    column("name", String),
    schema="sys",
)

# ---------------------------------------------------------------------------------------------------------------
# LSN functions.
# ---------------------------------------------------------------------------------------------------------------

MAX_LSN = select(func.sys.fn_cdc_get_max_lsn(type_=LargeBinary).label("max_lsn"))
"""``sys.fn_cdc_get_max_lsn()``: how far capture has got. NULL when the capture job never ran."""

MIN_LSN = select(
    func.sys.fn_cdc_get_min_lsn(bindparam("capture_instance", type_=String), type_=LargeBinary).label("min_lsn")
)
"""``sys.fn_cdc_get_min_lsn(:capture_instance)``: the low end of an instance's validity interval (rises with
cleanup); ``0x00…`` when the instance does not exist or the caller may not read it."""

# ---------------------------------------------------------------------------------------------------------------
# The source's clock.
# ---------------------------------------------------------------------------------------------------------------


class SourceClockNow(FunctionElement[Any]):
    """``SYSDATETIMEOFFSET()`` on SQL Server (its clock, with its offset); the emulator's ``sys.sysdatetimeoffset()``
    (PostgreSQL's ``clock_timestamp()`` shifted by its configurable offset, so a skewed source can be tested)."""

    name = "source_clock_now"
    inherit_cache = True
    type = DateTime(timezone=True)


@compiles(SourceClockNow)
def _source_clock_default(element: SourceClockNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "sys.sysdatetimeoffset()"


@compiles(SourceClockNow, "mssql")
def _source_clock_mssql(element: SourceClockNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "SYSDATETIMEOFFSET()"


SOURCE_CLOCK = select(SourceClockNow().label("source_now"))
"""The source's current time with its offset, to measure clock skew (``pipeline/clock.py``)."""

# ---------------------------------------------------------------------------------------------------------------
# Catalog queries.
# ---------------------------------------------------------------------------------------------------------------

_ct = change_tables.alias("ct")
_t = sys_tables.alias("t")
_s = sys_schemas.alias("s")

CAPTURE_INSTANCES = (
    select(
        _s.c.name.label("source_schema"),
        _t.c.name.label("source_table"),
        _ct.c.capture_instance,
        _ct.c.object_id,
        _ct.c.source_object_id,
        _ct.c.start_lsn,
        _ct.c.supports_net_changes,
        _ct.c.create_date,
    )
    .select_from(_ct.join(_t, _t.c.object_id == _ct.c.source_object_id).join(_s, _s.c.schema_id == _t.c.schema_id))
    .order_by(_s.c.name, _t.c.name, _ct.c.create_date, _ct.c.capture_instance)
)
"""Every capture instance of the database with its source table's schema and name."""

_cc = captured_columns.alias("cc")
_c = sys_columns.alias("c")
_ty = sys_types.alias("ty")
_dc = sys_default_constraints.alias("dc")
_ic = index_columns.alias("ic")

CAPTURE_INSTANCE_CATALOG = (
    select(
        _s.c.name.label("source_schema"),
        _t.c.name.label("source_table"),
        _ct.c.capture_instance,
        _ct.c.object_id,
        _ct.c.source_object_id,
        _ct.c.start_lsn,
        _ct.c.supports_net_changes,
        _ct.c.create_date,
        _cc.c.column_name,
        _cc.c.column_id,
        _cc.c.column_ordinal,
        _cc.c.column_type,
        _ty.c.name.label("type_name"),
        _c.c.max_length,
        _c.c.precision,
        _c.c.scale,
        _c.c.is_nullable,
        _dc.c.definition.label("column_default"),
        _c.c.collation_name,
        _ic.c.index_ordinal,
    )
    .select_from(
        _ct.join(_t, _t.c.object_id == _ct.c.source_object_id)
        .join(_s, _s.c.schema_id == _t.c.schema_id)
        .outerjoin(_cc, _cc.c.object_id == _ct.c.object_id)
        .outerjoin(_c, and_(_c.c.object_id == _ct.c.source_object_id, _c.c.column_id == _cc.c.column_id))
        .outerjoin(_ty, _ty.c.user_type_id == _c.c.user_type_id)
        .outerjoin(
            _dc, and_(_dc.c.parent_object_id == _ct.c.source_object_id, _dc.c.parent_column_id == _cc.c.column_id)
        )
        .outerjoin(_ic, and_(_ic.c.object_id == _ct.c.object_id, _ic.c.column_name == _cc.c.column_name))
    )
    .order_by(_s.c.name, _t.c.name, _ct.c.create_date, _ct.c.capture_instance, _cc.c.column_ordinal)
)
"""Every capture instance of the database in ONE query (the reader asks it at every idle poll): one row per
captured column, with its instance (source table's schema and name, start LSN, ...), the SOURCE column's type
facts and nullability, and its place in the row-identifying key (``index_ordinal``, NULL for a non-key column).

``collation_name`` tells the code page of a ``char``/``varchar``/``text`` column (``source/values.py``).
The change table's own columns are all nullable and ``rowversion`` becomes ``binary(8)`` there, so length,
precision, scale and nullability come from ``sys.columns`` of the source table (as Debezium does). Outer joins:
a captured column that was since dropped from the source still has to be read (it is NULL from then on). The
column's default (``sys.default_constraints.definition``) is kept for a column added to the target later. Key
columns are found among the captured ones: ``sp_cdc_enable_table`` requires the index columns to be captured."""

# ---------------------------------------------------------------------------------------------------------------
# Commit times.
# ---------------------------------------------------------------------------------------------------------------


def commit_times_page(page_rows: int) -> Select[tuple[bytes, object, bytes | None]]:
    """``cdc.lsn_time_mapping`` rows with ``:after_lsn < start_lsn <= :to_lsn``, in LSN order, one page.

    Paged like the change rows so that a window with very many transactions never sits in memory at once; the
    reader walks it in step with the merged change rows (both are in commit-LSN order)."""
    ltm = lsn_time_mapping
    return (
        select(ltm.c.start_lsn, ltm.c.tran_end_time, ltm.c.tran_id)
        .where(
            ltm.c.start_lsn > bindparam("after_lsn", type_=LargeBinary),
            ltm.c.start_lsn <= bindparam("to_lsn", type_=LargeBinary),
        )
        .order_by(ltm.c.start_lsn)
        .limit(page_rows)
    )


COMMIT_TIME = select(lsn_time_mapping.c.tran_end_time).where(
    lsn_time_mapping.c.start_lsn == bindparam("lsn", type_=LargeBinary)
)
"""The commit time of one LSN (like ``sys.fn_cdc_map_lsn_to_time``), for heartbeats."""

# ---------------------------------------------------------------------------------------------------------------
# Change rows.
# ---------------------------------------------------------------------------------------------------------------

START_LSN = "__$start_lsn"
SEQVAL = "__$seqval"
OPERATION = "__$operation"
UPDATE_MASK = "__$update_mask"
COMMAND_ID = "__$command_id"
METADATA_COLUMNS = (START_LSN, SEQVAL, OPERATION, UPDATE_MASK, COMMAND_ID)
"""The ``__$`` columns the reader selects, in this order, before the captured columns."""


def _q(name: str) -> quoted_name:
    return quoted_name(name, quote=True)


class RawBytes(FunctionElement[Any]):
    """A character column read as its stored bytes: ``CAST(col AS VARBINARY(MAX))`` on SQL Server.

    python-tds would decode ``varchar`` with the code page of the collation's LCID only (a ``_UTF8`` column
    arrives as mojibake) and raises inside the fetch on a byte sequence invalid in it, failing a whole page.
    The bytes are decoded by ``source/values.py`` instead, per column and strictly, so a bad value is one
    dead letter naming its column. Other dialects (the emulator: UTF-8 text in PostgreSQL) read the column
    as it is. No result type: each driver's bytes or text reach the decoder unchanged."""

    name = "raw_bytes"
    inherit_cache = True
    type = NullType()


@compiles(RawBytes)
def _raw_bytes_default(element: RawBytes, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(RawBytes, "mssql")
def _raw_bytes_mssql(element: RawBytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS VARBINARY(MAX))"


class SridWkb(FunctionElement[Any]):
    """A ``geography``/``geometry`` column as its SRID and OGC WKB: ``CAST(col.STSrid AS BINARY(4)) +
    col.STAsBinary()`` on SQL Server (4 bytes of SRID, big-endian, then the WKB; NULL stays NULL), turned into
    PostGIS EWKB by ``source/values.py``. The source computes it, so no serialization of SQL Server's own is
    parsed here. The column must be referenced through a table alias (``alias.[col].STSrid``): T-SQL would read
    ``schema.table.col.STSrid`` as a four-part name. Other dialects (the emulator, which has no spatial types
    and stores bytes as given) read the column as it is."""

    name = "srid_wkb"
    inherit_cache = True
    type = NullType()


@compiles(SridWkb)
def _srid_wkb_default(element: SridWkb, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(SridWkb, "mssql")
def _srid_wkb_mssql(element: SridWkb, compiler: SQLCompiler, **kw: Any) -> str:
    col = compiler.process(element.clauses, **kw)
    return f"CAST({col}.STSrid AS BINARY(4)) + {col}.STAsBinary()"


def read_column(
    col: ColumnElement[Any], name: str, raw: Collection[str], wkb: Collection[str] = ()
) -> ColumnElement[Any] | Label[Any]:
    """The select-list entry of a source column: itself, its raw bytes, or its SRID and WKB, under its name.

    The one place that says how a column is selected, for every reader of source rows: the streaming reader,
    the table snapshots (resync, initial snapshot) and reconcile. ``raw`` and ``wkb`` come from
    ``source/values.py`` (:func:`~mssql2pg.source.values.raw_columns`, :func:`~mssql2pg.source.values.wkb_columns`),
    whose decoders turn what is selected here into the canonical value."""
    read = read_expression(col, name, raw, wkb)
    return col if read is col else read.label(_q(name))


def read_expression(
    col: ColumnElement[Any], name: str, raw: Collection[str], wkb: Collection[str] = ()
) -> ColumnElement[Any]:
    """:func:`read_column` without its name: for use inside another expression (reconcile's canonical text)."""
    if name in wkb:
        return SridWkb(col)
    return RawBytes(col) if name in raw else col


_COLLATION_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class TextInCollation(FunctionElement[Any]):
    """A bound text value turned into a ``char``/``varchar`` column's own type and collation, to compare it with
    that column: ``CAST(:value COLLATE <collation> AS VARCHAR(8000))`` on SQL Server.

    A key column read as bytes (:class:`RawBytes`) continues its keyset page after its DECODED text, which
    python-tds binds as ``nvarchar``. Compared as it is, the ``varchar`` column would be converted to
    ``nvarchar`` (no index range; under a SQL collation a Unicode order that can disagree with the index order,
    skipping rows). ``COLLATE`` on the ``nvarchar`` value only labels it (Unicode loses nothing); the cast to
    ``varchar`` then encodes it in that collation's code page (UTF-8 for a ``_UTF8`` collation), so the
    comparison is the column's own: same collation, same type, the index order. 8000 bytes: longer than any
    index key. Other dialects (the emulator: UTF-8 text) compare the value as bound."""

    name = "text_in_collation"
    inherit_cache = True
    type = NullType()


@compiles(TextInCollation)
def _text_in_collation_default(element: TextInCollation, compiler: SQLCompiler, **kw: Any) -> str:
    value, _collation = element.clauses
    return compiler.process(value, **kw)


@compiles(TextInCollation, "mssql")
def _text_in_collation_mssql(element: TextInCollation, compiler: SQLCompiler, **kw: Any) -> str:
    value, collation = element.clauses
    return f"CAST({compiler.process(value, **kw)} COLLATE {compiler.process(collation, **kw)} AS VARCHAR(8000))"


def text_in_collation(value: ColumnElement[Any], collation: str) -> TextInCollation:
    """:class:`TextInCollation` of ``value``; the collation (from ``sys.columns``) is written into the statement,
    so anything but a plain collation name is refused."""
    if not _COLLATION_NAME.match(collation):
        msg = f"not a collation name: {collation!r}"
        raise ValueError(msg)
    return TextInCollation(value, literal_column(collation))


def change_table(capture_instance: str, captured: Sequence[str]) -> TableClause:
    """``cdc.<ci>_CT`` with its ``__$`` columns and the captured columns (all names quoted)."""
    meta: list[ColumnClause[object]] = [
        column(_q(START_LSN), LargeBinary),
        column(_q(SEQVAL), LargeBinary),
        column(_q(OPERATION), Integer),
        column(_q(UPDATE_MASK), LargeBinary),
        column(_q(COMMAND_ID), Integer),
    ]
    data: list[ColumnClause[object]] = [column(_q(name)) for name in captured]
    return table(_q(f"{capture_instance}_CT"), *meta, *data, schema="cdc")


def change_rows_page(
    capture_instance: str,
    captured: Sequence[str],
    page_rows: int,
    *,
    resume: bool,
    raw: Collection[str] = (),
    wkb: Collection[str] = (),
) -> Select[tuple[object, ...]]:
    """One keyset page of a change table, in ``(__$start_lsn, __$command_id, __$seqval, __$operation)`` order.

    Bounds are ``:to_lsn`` (inclusive) and either ``:after_lsn`` (exclusive, the first page of a window,
    ``resume=False``) or the position of the last row already read (``resume=True``: ``:lsn``, ``:command_id``,
    ``:seqval``, ``:operation``). The four-part key is unique (an update pair shares lsn, command id and seqval
    but not the operation), so resuming after it neither skips nor repeats a row, even when a page boundary
    falls inside a transaction or between the two halves of an update.

    Why a UNION ALL of four ranges rather than one OR: "after (l, c, s, o)" as an OR of four conditions is not
    an index range, so a database walks the index from ``l`` and filters. Inside one large transaction every
    row shares ``l``, and each page would re-read everything before it (quadratic: a million-row transaction
    took minutes). Each branch here is a plain range on the index's leading columns that a seek answers
    directly (SQL Server's clustered index and the emulator's index are on exactly this key), each is cut to
    ``page_rows``, and the outer ORDER BY/TOP merges them.

    Columns named in ``raw`` are read as their stored bytes (:class:`RawBytes`), those in ``wkb`` as SRID and WKB
    (:class:`SridWkb`).
    """
    ct = change_table(capture_instance, captured).alias("cdc_data")
    c = ct.c
    start_lsn, command_id, seqval, operation = c[START_LSN], c[COMMAND_ID], c[SEQVAL], c[OPERATION]
    to_lsn = bindparam("to_lsn", type_=LargeBinary)
    columns = [*(c[name] for name in METADATA_COLUMNS), *(read_column(c[name], name, raw, wkb) for name in captured)]
    key = (start_lsn, command_id, seqval, operation)
    if not resume:
        return (
            select(*columns)
            .where(start_lsn > bindparam("after_lsn", type_=LargeBinary), start_lsn <= to_lsn)
            .order_by(*key)
            .limit(page_rows)
        )
    lsn = bindparam("lsn", type_=LargeBinary)
    cmd = bindparam("command_id", type_=Integer)
    seq = bindparam("seqval", type_=LargeBinary)
    op = bindparam("operation", type_=Integer)
    ranges = [
        and_(start_lsn == lsn, command_id == cmd, seqval == seq, operation > op),
        and_(start_lsn == lsn, command_id == cmd, seqval > seq),
        and_(start_lsn == lsn, command_id > cmd),
        and_(start_lsn > lsn, start_lsn <= to_lsn),
    ]
    branches = [
        select(select(*columns).where(cond).order_by(*key).limit(page_rows).subquery(f"r{i}"))
        for i, cond in enumerate(ranges, start=1)
    ]
    page = union_all(*branches).subquery("page")
    pc = page.c
    return select(*pc).order_by(pc[START_LSN], pc[COMMAND_ID], pc[SEQVAL], pc[OPERATION]).limit(page_rows)


# ---------------------------------------------------------------------------------------------------------------
# Snapshot of a source table (``mssql2pg resync``).
# ---------------------------------------------------------------------------------------------------------------


def source_rows(
    source_schema: str,
    source_table: str,
    captured: Sequence[str],
    key: Sequence[str],
    *,
    raw: Collection[str] = (),
    wkb: Collection[str] = (),
) -> Select[tuple[object, ...]]:
    """The whole source table: the captured columns, in key order (SQL Server streams it; see ``snapshot``).
    Columns named in ``raw`` are read as their stored bytes (:class:`RawBytes`), those in ``wkb`` as SRID and
    WKB (:class:`SridWkb`); the order is the columns'. The table has an alias: a property of a spatial column
    (``src.[col].STSrid``) needs a two-part column reference, which a schema-qualified table name cannot give."""
    src = table(_q(source_table), *(column(_q(name)) for name in captured), schema=_q(source_schema)).alias("src")
    columns = (read_column(src.c[name], name, raw, wkb) for name in captured)
    return select(*columns).order_by(*(src.c[name] for name in key))


def source_rows_page(
    source_schema: str,
    source_table: str,
    captured: Sequence[str],
    key: Sequence[str],
    page_rows: int,
    *,
    resume: bool,
    raw: Collection[str] = (),
    wkb: Collection[str] = (),
    key_collations: Mapping[str, str] | None = None,
) -> Select[tuple[object, ...]]:
    """One keyset page of the source table itself: the captured columns, in primary-key order.

    ``resume=True`` continues after the key of the last row read, bound as ``:key_0`` … ``:key_<n-1>``. The
    predicate "after (k0, k1, …)" is spelled out as ``k0 > :key_0 OR (k0 = :key_0 AND k1 > :key_1) …``
    because T-SQL has no row-value comparison; for the usual one-column key it is a plain index range. Keyset
    pages rather than one long cursor: memory stays bounded whatever the driver does with result sets, and no
    read holds locks or a version store for the length of a whole table scan.

    Columns are selected as the streaming reader selects them (:func:`read_column`: ``raw`` as their stored bytes,
    ``wkb`` as SRID and WKB); the predicate and the order are on the columns themselves. A key column named in
    ``key_collations`` (a ``char``/``varchar`` key read as bytes) is compared with its decoded text turned back
    into its collation (:func:`text_in_collation`). The table has an alias, as in :func:`source_rows`.
    """
    src = table(_q(source_table), *(column(_q(name)) for name in captured), schema=_q(source_schema)).alias("src")
    keys = [src.c[name] for name in key]
    stmt = select(*(read_column(src.c[name], name, raw, wkb) for name in captured)).order_by(*keys).limit(page_rows)
    if not resume:
        return stmt
    collations = key_collations or {}
    after: list[ColumnElement[Any]] = [
        text_in_collation(bindparam(f"key_{i}"), collations[name]) if name in collations else bindparam(f"key_{i}")
        for i, name in enumerate(key)
    ]
    branches = [
        and_(*(keys[j] == after[j] for j in range(i)), keys[i] > after[i]) if i else keys[0] > after[0]
        for i in range(len(keys))
    ]
    return stmt.where(or_(*branches))


# ---------------------------------------------------------------------------------------------------------------
# Privileges (``mssql2pg check``).
# ---------------------------------------------------------------------------------------------------------------

CURRENT_USER = select(func.current_user(type_=String).label("current_user"))
"""The database user the login maps to (the name a GRANT names); ``CURRENT_USER`` on both sides."""


def can_read(schema: str, name: str) -> Select[Any]:
    """``SELECT 1 FROM schema.name WHERE 0 = 1``: reads nothing, but the server checks the SELECT permission
    (SQL Server error 229, PostgreSQL 42501 when it is missing)."""
    return select(literal(1)).select_from(table(_q(name), schema=_q(schema))).where(false())


def cleanup_retention(*, mssql: bool) -> Select[Any]:
    """The cleanup job's retention in minutes (``:job_type`` is ``cleanup``): how long a change stays in the
    change tables. SQL Server keeps it in ``msdb.dbo.cdc_jobs`` (readable only with access to msdb; the caller
    falls back to a configured value); the emulator answers through its ``sys.sp_cdc_help_jobs()``."""
    job_type = bindparam("job_type", "cleanup", type_=String)
    if mssql:
        jobs = table(
            "cdc_jobs",
            column("retention", BigInteger),
            column("database_id", Integer),
            column("job_type", String),
            schema="msdb.dbo",
        )
        return select(jobs.c.retention).where(jobs.c.database_id == func.db_id(), jobs.c.job_type == job_type)
    help_jobs = func.sys.sp_cdc_help_jobs().table_valued(column("retention", BigInteger), column("job_type", String))
    return select(help_jobs.c.retention).where(help_jobs.c.job_type == job_type)


def source_row_count(source_schema: str, source_table: str, *, mssql: bool) -> Select[Any]:
    """How many rows the source table holds, as a 64-bit count (``COUNT_BIG``: ``COUNT`` is an ``int`` on SQL
    Server and overflows past 2,147,483,647 rows). The estimated total of an initial snapshot's progress."""
    src = table(_q(source_table), schema=_q(source_schema))
    star: ColumnClause[Any] = literal_column("*")
    counted = func.count_big(star, type_=BigInteger) if mssql else func.count(star)
    return select(counted).select_from(src)


# ---------------------------------------------------------------------------------------------------------------
# Managing capture instances (``schema_evolution.manage_capture_instances``, issue 12 point 8).
# ---------------------------------------------------------------------------------------------------------------

SOURCE_TABLE_COLUMNS = (
    select(sys_columns.c.object_id, sys_columns.c.column_id, sys_columns.c.name)
    .where(sys_columns.c.object_id.in_(bindparam("object_ids", expanding=True)))
    .order_by(sys_columns.c.object_id, sys_columns.c.column_id)
)
"""Every column of the given source tables (``sys.columns``), captured or not: a column the table has and its
capture instance lacks was added after the instance was created."""

INSTANCE_OPTIONS = select(
    change_tables.c.capture_instance,
    change_tables.c.role_name,
    change_tables.c.index_name,
    change_tables.c.filegroup_name,
    change_tables.c.supports_net_changes,
    change_tables.c.partition_switch,
).where(change_tables.c.capture_instance == bindparam("capture_instance", type_=String))
"""How a capture instance was enabled (gating role, row-identifying index, filegroup, net changes, partition
switch): the instance that replaces it is enabled the same way."""

DDL_SEEN = (
    select(ddl_history.c.object_id, func.count().label("ddl_count"))
    .where(ddl_history.c.object_id.in_(bindparam("object_ids", expanding=True)))
    .group_by(ddl_history.c.object_id)
)
"""How many column changes (``cdc.ddl_history``) capture has seen on each given capture instance (by its
change table's ``object_id``) since the instance was created."""


class IsDbOwner(FunctionElement[Any]):
    """``IS_MEMBER('db_owner')`` on SQL Server: 1 when the login may enable and disable capture instances (their
    procedures need ``db_owner``), 0 when not. The emulator's ``sys.is_member`` answers the same question from
    PostgreSQL's roles (superuser, database owner, or a member of a role ``db_owner``)."""

    name = "is_db_owner"
    inherit_cache = True
    type = Integer()


@compiles(IsDbOwner)
def _is_db_owner_default(element: IsDbOwner, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sys.is_member({compiler.process(element.clauses, **kw)})"


@compiles(IsDbOwner, "mssql")
def _is_db_owner_mssql(element: IsDbOwner, compiler: SQLCompiler, **kw: Any) -> str:
    return f"IS_MEMBER({compiler.process(element.clauses, **kw)})"


IS_DB_OWNER = select(IsDbOwner(bindparam("role", "db_owner", type_=String)).label("is_db_owner"))
"""Whether the source login is in ``db_owner`` (bound: ``:role``, ``db_owner`` by default)."""


class CdcProcedure(Executable, ClauseElement):
    """A call of a ``sys.sp_cdc_*`` procedure with named, bound arguments: ``EXEC sys.<name> @arg = ?, ...`` on
    SQL Server, ``CALL sys.<name>(arg => ?, ...)`` on the emulator (its procedures take the same names)."""

    inherit_cache = True

    def __init__(self, name: str, arguments: Sequence[str]) -> None:
        self.name = name
        self.arguments = tuple(arguments)
        self.binds: list[BindParameter[Any]] = [bindparam(argument) for argument in arguments]

    def _gen_cache_key(self, anon_map: Any, bindparams: list[Any]) -> tuple[Any, ...]:
        bindparams.extend(self.binds)
        return (type(self), self.name, self.arguments)


@compiles(CdcProcedure)
def _cdc_procedure_default(element: CdcProcedure, compiler: SQLCompiler, **kw: Any) -> str:
    args = ", ".join(
        f"{a} => {compiler.process(b, **kw)}" for a, b in zip(element.arguments, element.binds, strict=True)
    )
    return f"CALL sys.{element.name}({args})"


@compiles(CdcProcedure, "mssql")
def _cdc_procedure_mssql(element: CdcProcedure, compiler: SQLCompiler, **kw: Any) -> str:
    args = ", ".join(
        f"@{a} = {compiler.process(b, **kw)}" for a, b in zip(element.arguments, element.binds, strict=True)
    )
    return f"EXEC sys.{element.name} {args}"


ENABLE_TABLE = CdcProcedure(
    "sp_cdc_enable_table",
    (
        "source_schema",
        "source_name",
        "role_name",
        "capture_instance",
        "supports_net_changes",
        "index_name",
        "captured_column_list",
        "filegroup_name",
        "allow_partition_switch",
    ),
)
"""``sys.sp_cdc_enable_table`` with every argument bound: a new capture instance of a source table."""

DISABLE_TABLE = CdcProcedure("sp_cdc_disable_table", ("source_schema", "source_name", "capture_instance"))
"""``sys.sp_cdc_disable_table`` for one named capture instance (never ``all``)."""
