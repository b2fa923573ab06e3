"""The configuration schema: every key, its type, default, validation and meaning.

The field docstrings are the documentation: ``docs/configuration.md`` embeds the reference table rendered
from them (:mod:`mssql2pg.config.reference`), and a test keeps the two in step. Every section forbids
unknown keys, so a typo is an error at start-up instead of a silently ignored setting. Models are frozen:
the configuration is read once and never changes while the pipeline runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from mssql2pg.config.durations import Duration
from mssql2pg.config.patterns import TablePattern
from mssql2pg.instance import application_name

DeleteMode = Literal["hard", "soft"]
Naming = Literal["lower", "preserve"]
Spatial = Literal["native", "wkb"]
# --- issue 17 point 1: writes to the target by someone else ---
OnTargetConflict = Literal["source-wins", "dead-letter"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["json", "console", "auto"]
JitterMode = Literal["full", "decorrelated"]
SnapshotMode = Literal["initial", "never"]

REMOVED_KEYS: Mapping[str, str] = {
    "apply.staging": "removed: it never had an effect (staging tables are always session TEMP tables); delete the key",
}
"""Keys an older configuration may still set, with what to do about them. They are refused like any unknown
key, but with this message instead of "unknown key" and a guess at a typo; the reference lists them."""

_PIPELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _usable_group_name(value: str) -> str:
    """One rule for every group name (``pipeline.group``, ``defaults.group``, ``tables[].group``): a group a
    table is put in must be one a process can be started for, and it is a key of the control schema."""
    if not _PIPELINE_NAME.fullmatch(value):
        msg = f"{value!r} is not a usable group name (letters, digits, '_', '.', '-'; at most 63)"
        raise ValueError(msg)
    return value


GroupName = Annotated[str, AfterValidator(_usable_group_name)]

AUTO_GROUP = "auto"
"""``pipeline.group: auto``: the processes share the groups among themselves (see
:mod:`mssql2pg.pipeline.spreading`). Reserved: no table group may be called so."""


def _table_group_name(value: str) -> str:
    if value == AUTO_GROUP:
        msg = f"{AUTO_GROUP!r} is reserved (`pipeline.group: {AUTO_GROUP}` spreads the groups over processes)"
        raise ValueError(msg)
    return value


TableGroupName = Annotated[GroupName, AfterValidator(_table_group_name)]


class Section(BaseModel):
    """Common settings for every section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        coerce_numbers_to_str=True,  # MSSQL2PG__PIPELINE__NAME=2024 is the string "2024"
        validate_default=True,
    )


# --------------------------------------------------------------------------------------------------- databases

_SOURCE_DRIVERS = {
    "mssql": "mssql+pytds",
    "mssql+pytds": "mssql+pytds",
    "postgresql": "postgresql+pg8000",
    "postgres": "postgresql+pg8000",
    "postgresql+pg8000": "postgresql+pg8000",
}
_TARGET_DRIVERS = {k: v for k, v in _SOURCE_DRIVERS.items() if v == "postgresql+pg8000"}


class DatabaseConfig(Section):
    """A database connection. The password is kept apart from the URL so that the URL can be shown."""

    _drivers: ClassVar[dict[str, str]] = _SOURCE_DRIVERS
    _accepted: ClassVar[str] = "mssql+pytds://, mssql:// or postgresql://"

    url: str
    """Database URL without the password: ``mssql+pytds://cdc_reader@mssql:1433/shop`` for SQL Server
    (``mssql://`` means the same), or ``postgresql://user@host:5432/db`` for the CDC emulator. A password
    written inside the URL is accepted but moved to ``password`` (and so treated as a secret)."""

    password: SecretStr | None = None
    """The password. Prefer ``MSSQL2PG__<SECTION>__PASSWORD`` or ``password_file`` to writing it in the file.
    Never printed, logged or put into error messages."""

    password_file: Path | None = None
    """A file holding the password (Docker/Kubernetes secrets: ``/run/secrets/...``); one trailing newline is
    stripped. Read once at start-up; wins over a ``password`` from the file when given in the environment."""

    connect_timeout: Duration = Field(default=10.0, gt=0)
    """How long to wait for a connection to open before treating the attempt as a transient failure: the login
    timeout for SQL Server, the connect timeout for the PostgreSQL target. Not applied to the CDC emulator as
    source (pg8000's timeout there would also cut long-running statements)."""

    @model_validator(mode="before")
    @classmethod
    def _move_url_password(cls, data: Any) -> Any:
        """A password inside the URL becomes ``password`` (unless one is given explicitly, which wins)."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        try:
            url = make_url(data["url"])
        except ArgumentError:
            return data  # reported by the url validator
        if url.password is None:
            return data
        moved = dict(data)
        moved["url"] = _without_password(url).render_as_string(hide_password=False)
        if moved.get("password") is None:
            moved["password"] = str(url.password)
        return moved

    @field_validator("url")
    @classmethod
    def _normalise_driver(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            msg = f"not a database URL; expected {cls._accepted} followed by user@host:port/database"
            raise ValueError(msg) from None
        driver = cls._drivers.get(url.drivername.lower())
        if driver is None:
            msg = f"unsupported driver {url.drivername!r}; use {cls._accepted}"
            if url.drivername.lower().startswith("postgresql+"):
                msg += " (mssql2pg connects to PostgreSQL with pg8000 only)"
            elif url.drivername.lower().startswith("mssql+"):
                msg += " (mssql2pg connects to SQL Server with python-tds only)"
            raise ValueError(msg)
        if not url.host:
            msg = f"the URL has no host; expected {cls._accepted} followed by user@host:port/database"
            raise ValueError(msg)
        if not url.database:
            msg = "the URL names no database; add /<database> after the host"
            raise ValueError(msg)
        return _without_password(url.set(drivername=driver)).render_as_string(hide_password=False)

    @property
    def backend(self) -> Literal["mssql", "postgresql"]:
        """``mssql`` for SQL Server, ``postgresql`` for PostgreSQL (the target, or the emulator as source)."""
        return "mssql" if self.url.startswith("mssql") else "postgresql"

    def sqlalchemy_url(self) -> URL:
        """The URL for ``sqlalchemy.create_engine``, password included. A ``URL`` object, never a string:
        its ``str()`` and ``repr()`` hide the password."""
        url = make_url(self.url)
        if self.password is not None:
            url = url.set(password=self.password.get_secret_value())
        return url

    def redacted_url(self) -> str:
        """The URL as it may appear in logs and messages: the password, if any, shown as ``***``."""
        return self.sqlalchemy_url().render_as_string(hide_password=True)

    def engine_connect_args(self) -> dict[str, Any]:
        """``connect_args`` for ``sqlalchemy.create_engine(self.sqlalchemy_url(), connect_args=...)``: the
        login timeout and an application name that shows up in the server's session lists. For PostgreSQL
        no timeout is set here: pg8000's ``timeout`` would also cut long-running statements."""
        if self.backend == "mssql":
            return {"login_timeout": max(1, round(self.connect_timeout)), "appname": "mssql2pg"}
        return {"application_name": application_name()}

    def pg8000_params(self) -> dict[str, Any]:
        """Keyword arguments for ``pg8000.native.Connection`` (PostgreSQL URLs only). ``timeout`` is pg8000's
        socket timeout: it bounds the connect, and every read after it unless the caller resets the socket's
        timeout once connected (long statements are normal in the applier). TLS (``ssl_context``) is added by
        :func:`mssql2pg.pipeline.connections.target_connector`, the one place the target is connected."""
        if self.backend != "postgresql":
            msg = f"{self.redacted_url()} is not a PostgreSQL URL"
            raise ValueError(msg)
        url = self.sqlalchemy_url()
        params: dict[str, Any] = {
            "user": url.username or "postgres",
            "host": url.host,
            "port": url.port or 5432,
            "database": url.database,
            "timeout": self.connect_timeout,
            "application_name": application_name(),
        }
        if url.password is not None:
            params["password"] = url.password
        return params


def _without_password(url: URL) -> URL:
    return URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)


SourceEncrypt = Literal["off", "on", "strict"]


class SourceConfig(DatabaseConfig):
    """Where changes are read: SQL Server (``mssql+pytds://``) or the CDC emulator (``postgresql://``)."""

    encrypt: SourceEncrypt = "off"
    """TLS to SQL Server (python-tds with pyOpenSSL). ``off``: no encryption (login and data in clear text; a
    server that requires encryption refuses the login). ``on``: the whole connection encrypted, the server's
    certificate verified against ``ca_file``, and its host name checked unless ``check_hostname`` is false.
    ``strict``: as ``on``, and ``check_hostname: false`` is refused. python-tds has no TDS 8.0, so this is not
    SQL Server's ``Encrypt=Strict`` (TLS before the pre-login); and it cannot encrypt without verifying, so there
    is no ``TrustServerCertificate``. SQL Server only."""

    ca_file: Path | None = None
    """The CA certificate(s) (PEM file) the SQL Server certificate must chain to; required when ``encrypt`` is
    ``on`` or ``strict``. For a self-signed server certificate, the certificate itself."""

    check_hostname: bool = True
    """Whether the SQL Server certificate must name the host of ``url`` (with ``encrypt: on``). Turning it off
    still verifies the chain; ``encrypt: strict`` refuses it."""

    @field_validator("encrypt", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        """YAML reads an unquoted ``off``/``on`` as a boolean: take it as the word that was written."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @model_validator(mode="after")
    def _encryption_needs_sql_server_and_a_ca(self) -> SourceConfig:
        if self.encrypt == "off":
            return self
        if self.backend != "mssql":
            msg = "source.encrypt applies to SQL Server only (the emulator is connected with pg8000)"
            raise ValueError(msg)
        if self.ca_file is None:
            msg = (
                f"source.encrypt {self.encrypt} needs source.ca_file (python-tds verifies the server's certificate "
                "whenever it encrypts)"
            )
            raise ValueError(msg)
        if self.encrypt == "strict" and not self.check_hostname:
            msg = "source.encrypt strict checks the host name: remove source.check_hostname: false"
            raise ValueError(msg)
        return self


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
TLS_QUERY_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
"""The query parameters ``target.url`` accepts (libpq's names); each is also a ``target.*`` key."""


class TargetConfig(DatabaseConfig):
    """The PostgreSQL data warehouse changes are applied to."""

    _drivers: ClassVar[dict[str, str]] = _TARGET_DRIVERS
    _accepted: ClassVar[str] = "postgresql:// (or postgresql+pg8000://)"

    url: str
    """PostgreSQL URL without the password, e.g. ``postgresql://warehouse@postgres:5432/dw`` (connected with
    pg8000). A password written inside the URL is accepted but moved to ``password``. The query may carry
    libpq's TLS parameters ``sslmode``, ``sslrootcert``, ``sslcert`` and ``sslkey``
    (``...?sslmode=verify-full&sslrootcert=/etc/ssl/dw-ca.pem``); they are moved to the ``target.ssl*`` keys.
    Any other query parameter is refused (it would be ignored)."""

    sslmode: SslMode = "prefer"
    """TLS to the target, with libpq's meaning. ``verify-full``: encrypted, the server's certificate must chain
    to ``sslrootcert`` and name the host connected to (the setting that stops a man-in-the-middle).
    ``verify-ca``: encrypted, the chain is checked but not the host name. ``require``: encrypted, nothing
    verified (as in libpq, ``require`` with ``sslrootcert`` set verifies the chain like ``verify-ca``).
    ``prefer`` (the default, as in libpq): TLS without verification when the server offers it, else plain.
    ``allow``: plain first, TLS without verification when the server refuses plain. ``disable``: plain."""

    sslrootcert: str | None = None
    """The CA certificate(s) (PEM file) the target's certificate must chain to, or ``system`` for the
    operating system's CA store. Required by ``verify-ca`` and ``verify-full``: unlike libpq, no default file
    (``~/.postgresql/root.crt``) is read."""

    sslcert: Path | None = None
    """Client certificate (PEM) for servers that authenticate clients by certificate (``clientcert`` in
    pg_hba.conf); needs ``sslkey`` unless the file holds the key too."""

    sslkey: Path | None = None
    """The private key (PEM, unencrypted) of ``sslcert``."""

    # --- issue 17 point 1: writes to the target by someone else ---
    protect: bool = False
    """Guard the replicated tables against writes by anyone but mssql2pg: at start the pipeline installs on each
    of its tables a statement trigger (``mssql2pg_protect``) that refuses ``INSERT``, ``UPDATE``, ``DELETE`` and
    ``TRUNCATE`` from any session that is not mssql2pg's (its sessions carry the setting ``mssql2pg.writer``);
    ``false`` removes it at the next start. Resync, snapshots, ``reconcile --repair`` and ``dlq retry`` still
    write. A session that sets ``mssql2pg.writer`` on purpose, a superuser, and ``session_replication_role =
    replica`` get past it: it prevents accidents, not attacks (privileges do that). Installing it needs the
    ``TRIGGER`` privilege on tables the pipeline's role does not own. See docs/operations.md."""

    @model_validator(mode="before")
    @classmethod
    def _tls_from_query(cls, data: Any) -> Any:
        """Move libpq's TLS query parameters from ``url`` to the ``ssl*`` keys, refusing any other parameter
        (pg8000 takes no URL query: it would be dropped without a word) and a parameter that contradicts the
        key of the same name."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        try:
            url = make_url(data["url"])
        except ArgumentError:
            return data  # reported by the url validator
        if not url.query:
            return data
        unknown = sorted(set(url.query) - set(TLS_QUERY_KEYS))
        if unknown:
            msg = (
                f"the target URL has query parameter(s) {', '.join(unknown)} that would be ignored; "
                f"only {', '.join(TLS_QUERY_KEYS)} are accepted (other settings are target.* keys)"
            )
            raise ValueError(msg)
        moved = dict(data)
        for key, value in url.query.items():
            if not isinstance(value, str):
                msg = f"the target URL gives {key} more than once"
                raise ValueError(msg)
            if moved.get(key) is not None and str(moved[key]) != value:
                msg = f"target.{key} is {moved[key]!r} but the target URL says {key}={value}; give it once"
                raise ValueError(msg)
            moved[key] = value
        moved["url"] = url.set(query={}).render_as_string(hide_password=False)
        return moved

    @model_validator(mode="after")
    def _verification_needs_a_ca(self) -> TargetConfig:
        if self.sslmode in ("verify-ca", "verify-full") and self.sslrootcert is None:
            msg = (
                f"sslmode {self.sslmode} needs target.sslrootcert (the CA file the server's certificate must "
                "chain to, or 'system' for the operating system's CAs)"
            )
            raise ValueError(msg)
        if self.sslkey is not None and self.sslcert is None:
            msg = "target.sslkey is set without target.sslcert"
            raise ValueError(msg)
        return self


# ------------------------------------------------------------------------------------------------------ tables


class Defaults(Section):
    """Options every table gets unless its entry in ``tables`` says otherwise."""

    delete_mode: DeleteMode = "hard"
    """``hard``: a source delete deletes the target row. ``soft``: the row stays, marked deleted, with its last
    values."""

    naming: Naming = "lower"
    """``lower``: target schema, table and column names are lower-cased (names that then collide are a
    configuration error). ``preserve``: names keep the source spelling (and must then be quoted in SQL)."""

    target_schema: str | None = None
    """Target schema for every table; unset means the source table's schema name (lower-cased under
    ``naming: lower``)."""

    spatial: Spatial = "native"
    """How ``geography``/``geometry`` columns are read. ``native``: SQL Server's own serialization, lossless
    (``bytea`` that PostGIS cannot read). ``wkb``: the source's ``STAsBinary()`` with ``STSrid``, stored as EWKB
    (WKB carrying the SRID) in the same ``bytea`` column, so PostGIS reads it with ``ST_GeomFromEWKB(col)`` or
    ``col::geometry``; 2-D only (Z and M values are dropped, as ``STAsBinary()`` drops them). See docs/types.md."""

    # --- issue 17 point 1: writes to the target by someone else ---
    on_target_conflict: OnTargetConflict = "source-wins"
    """What the applier does when a change meets a row written in the target by someone else (an update or
    delete of a key deleted there, an insert of a key inserted there, a row whose ``_cdc_lsn`` the pipeline cannot
    have written). Every such conflict is counted (``mssql2pg_target_conflicts_total``, ``mssql2pg status``) and
    logged either way. ``source-wins``: the change is applied as usual (a row stamped with a later ``_cdc_lsn``
    keeps winning until the source passes it). ``dead-letter``: the target row is kept as it is and the change
    goes to the dead letters (error class ``TargetConflictError [kind]``) for review; it costs one statement more per
    batch of the table, and the rows of the transactions being applied are kept in memory to dead-letter them (a
    very large source transaction costs memory in proportion). See docs/operations.md."""

    group: TableGroupName = "default"
    """The table group. Source transactions are kept atomic within a group, and each group keeps its own
    position; one process writes a group at a time (see ``pipeline.group`` and docs/scale-out.md). Tables that
    change in the same source transactions belong in the same group. Letters, digits, ``_``, ``.``, ``-``; at most
    63 characters (the rule of ``pipeline.group``, so a process can be started for every group)."""


class TableEntry(Section):
    """One entry of ``tables``: a name or wildcard plus optional per-table options. A plain string entry
    ``"dbo.orders"`` is the same as ``{name: dbo.orders}``."""

    name: str
    """Source table or wildcard: ``dbo.orders``, ``orders`` (= ``dbo.orders``), ``sales.*``, ``*.*``,
    ``dbo.order_*``, ``[dbo].[Order Lines]``. Matching ignores case."""

    target: str | None = None
    """Target ``schema.table`` (or ``table``, in the default target schema) for an explicit name; spelled
    exactly as given. Not allowed on wildcards (use ``target_schema``)."""

    target_schema: str | None = None
    """Target schema for the tables this entry selects (overrides ``defaults.target_schema``)."""

    delete_mode: DeleteMode | None = None
    """Overrides ``defaults.delete_mode`` for these tables."""

    naming: Naming | None = None
    """Overrides ``defaults.naming`` for these tables."""

    group: TableGroupName | None = None
    """Overrides ``defaults.group`` for these tables (not ``auto``, which is reserved)."""

    spatial: Spatial | None = None
    """Overrides ``defaults.spatial`` for these tables: ``wkb`` reads their ``geography``/``geometry`` columns as
    EWKB (``STAsBinary()`` + ``STSrid``) instead of SQL Server's native serialization."""

    # --- issue 17 point 1: writes to the target by someone else ---
    on_target_conflict: OnTargetConflict | None = None
    """Overrides ``defaults.on_target_conflict`` for these tables."""

    @field_validator("name")
    @classmethod
    def _parse_name(cls, value: str) -> str:
        TablePattern.parse(value)
        return value.strip()

    @field_validator("target")
    @classmethod
    def _parse_target(cls, value: str | None) -> str | None:
        if value is not None:
            pattern = TablePattern.parse(value)
            if pattern.is_wildcard:
                msg = f"a target is one table, not a wildcard: {value!r}"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _target_only_for_one_table(self) -> TableEntry:
        if self.target is not None and self.pattern.is_wildcard:
            msg = (
                f"'target' renames one table but {self.name!r} is a wildcard; "
                "use 'target_schema' to choose the schema for all the tables it matches"
            )
            raise ValueError(msg)
        if self.target is not None and self.target_schema is not None:
            msg = "give either 'target' (schema.table) or 'target_schema', not both"
            raise ValueError(msg)
        return self

    @property
    def pattern(self) -> TablePattern:
        return TablePattern.parse(self.name)


# ---------------------------------------------------------------------------------------------------- behaviour


class PipelineSettings(Section):
    """Identity of this pipeline in the target's control tables."""

    name: str = "default"
    """The checkpoint key: pipelines with different names keep separate positions in the same target.
    Letters, digits, ``_``, ``.``, ``-``; at most 63 characters."""

    group: GroupName | None = None
    """Replicate only the tables of this group (scale-out: one process per group, all with the same config
    and ``name``). Each group keeps its own checkpoint, keyed by ``name`` and group; a group that never
    committed starts from the pipeline's position without a group (the one it had before groups, if any). A
    second process started for the same name and group is a standby: it waits, logging that it does, and
    takes over when the first one's connection to the target ends. Unset: every selected table, under the
    position without a group. ``auto``: the processes of the pipeline share the groups among themselves,
    each writing its fair share (groups over live processes) of the groups nobody writes, letting groups go when
    others join and taking the groups of processes that die; every process of a scaled-out deployment can then
    share one configuration. Letters, digits, ``_``, ``.``, ``-``; at most
    63 characters. See docs/scale-out.md."""

    standby_poll: Duration = Field(default=1.0, gt=0)
    """How often a standby (a second process of the same ``name`` and ``group``) tries to take over. It takes
    over at most this long after the active process's connection to the target ends: at once when that process
    dies (the server notices the closed socket), after the server's TCP keepalive gives up when its machine or
    network is gone."""

    @property
    def spreads(self) -> bool:
        """``group: auto``: which group this process writes is decided at run time."""
        return self.group == AUTO_GROUP

    @property
    def group_key(self) -> str:
        """The group whose position this process keeps in the control schema: ``group``, or ``''`` when unset
        (a process replicating every group, and every command but ``run`` under ``group: auto``)."""
        return "" if self.group is None or self.spreads else self.group

    @field_validator("name")
    @classmethod
    def _usable_as_key(cls, value: str) -> str:
        if not _PIPELINE_NAME.fullmatch(value):
            msg = f"{value!r} is not a usable pipeline name (letters, digits, '_', '.', '-'; at most 63)"
            raise ValueError(msg)
        return value


class ReaderSettings(Section):
    """How changes are read from the source's CDC change tables."""

    poll_interval: Duration = Field(default=0.5, gt=0)
    """Pause between polls for new changes when the source is idle."""

    chunk_rows: int = Field(default=10_000, ge=1)
    """Most rows handed to the applier in one piece; a bigger source transaction is streamed in several
    pieces (still applied in one PostgreSQL transaction). Bounds memory."""

    page_rows: int = Field(default=10_000, ge=1)
    """Rows fetched from one change table per query (keyset pagination). Bounds memory on the source side."""

    separate_process: bool = False
    """Read the source in a process of its own, so that reading and applying each can use a CPU core (both are
    CPU-bound Python; in one process they take turns). Costs one more process (~90 MB). Off by default: on a
    2-CPU machine that also runs both databases it gained nothing (README, benchmarks); try it where the
    databases run elsewhere and the pipeline has two cores of its own."""


class ApplySettings(Section):
    """How changes are applied to the target."""

    max_batch_rows: int = Field(default=50_000, ge=1)
    """Small source transactions are grouped into one PostgreSQL transaction up to this many rows (a single
    bigger source transaction is never split)."""

    max_batch_seconds: Duration = Field(default=0.2, ge=0)
    """...and for at most this long after the group's first change, so latency stays low under light load."""

    heartbeat_interval: Duration = Field(default=1.0, gt=0)
    """When the source is idle, the checkpoint advances at most this often (one small write)."""


class SnapshotSettings(Section):
    """Loading the rows a table already holds when the pipeline meets it for the first time."""

    mode: SnapshotMode = "initial"
    """``initial``: a selected table this pipeline never replicated (its first start, or a table added to the
    configuration later) is first loaded from the source table as of a snapshot LSN, in chunks by key, while the
    other tables keep streaming; it then streams from that LSN on, like after ``mssql2pg resync``. ``never``:
    such a table streams from the pipeline's checkpoint, or from where its capture instance starts when that is
    later (or from the start of its CDC history on a first run), so rows that existed before CDC was enabled
    never reach the target. A load already under way is finished either way."""

    chunk_rows: int = Field(default=50_000, ge=1)
    """Rows read by key and committed to the target together with the load's progress, per chunk: a restart
    resumes after the last committed chunk. Bounds memory (a chunk is held whole)."""


class RetrySettings(Section):
    """Backoff for transient failures (connection lost, deadlock, server restart, disk full, ...)."""

    initial: Duration = Field(default=1.0, gt=0)
    """First delay."""

    maximum: Duration = Field(default=60.0, gt=0)
    """Longest delay."""

    multiplier: float = Field(default=2.0, ge=1)
    """Growth factor between attempts."""

    jitter: bool = True
    """Randomise delays so that many processes do not retry in lock-step."""

    jitter_mode: JitterMode = "full"
    """``full``: each delay is uniform between ``initial`` and the exponential bound. ``decorrelated``: each
    delay is uniform between ``initial`` and ``multiplier`` x the previous delay (AWS "decorrelated jitter"),
    never above the exponential bound."""

    alert_after: Duration = Field(default=600.0, gt=0)
    """After failing continuously this long, health turns unhealthy and the failure alert fires. Retrying
    continues."""

    max_attempts: int | None = Field(default=None, ge=1)
    """Stop after this many failed attempts in a row and exit with an error (the checkpoint keeps every change,
    so nothing is lost; a supervisor can restart). Attempts at start-up and while streaming count together; an
    attempt that commits starts a new count. Unset: retry forever, the recommended setting."""

    @model_validator(mode="after")
    def _maximum_not_below_initial(self) -> RetrySettings:
        if self.maximum < self.initial:
            msg = f"maximum ({self.maximum:g}s) is below initial ({self.initial:g}s)"
            raise ValueError(msg)
        return self


class ClockSkewSettings(Section):
    """Measuring the source's clock against the target's (issue 17 point 3). Lag and staleness compare source
    commit times with the current time; a source whose clock is off would show a lag of 0 (clock ahead) or
    flag fresh changes as stale (clock behind). The pipeline measures the offset, round-trip corrected, at
    start and every ``interval``, exports it as ``mssql2pg_clock_skew_seconds`` and corrects lag and
    staleness for it."""

    interval: Duration = Field(default=300.0, gt=0)
    """How often the clocks are measured again while running (also at every start)."""

    warn_above: Duration = Field(default=5.0, gt=0)
    """A skew larger than this (either way) is logged as a warning at each measurement."""


class SchemaEvolutionSettings(Section):
    """Following the source's schema changes (issue 12; docs/schema-evolution.md). The section is called
    ``schema_evolution`` rather than ``schema``: pydantic models reserve ``schema``."""

    manage_capture_instances: bool = False
    """Let the pipeline manage capture instances itself: after an ADD or DROP COLUMN on a replicated table it
    enables the new capture instance (``sp_cdc_enable_table``, with a generated name and the old instance's
    role, filegroup, index and captured-columns policy), and once its checkpoint has passed the new instance's
    start it disables the old one (``sp_cdc_disable_table``), so no operator step is needed. Needs the source
    login to be ``db_owner``; without it, each such change is recorded ``failed`` with the manual procedure.
    Only the process that writes a table's group acts on it."""

    manage_interval: Duration = Field(default=5.0, gt=0)
    """How often, with ``manage_capture_instances``, the source catalog is compared with the capture instances
    (a table changed without a new instance; an old instance that may be retired)."""

    fill_added_columns: bool = True
    """After a column is added at the source, set it in the target rows no change table carried its value for
    (rows changed between the ``ALTER TABLE`` and the new capture instance's start, and rows whose value the
    source filled with a function such as ``getdate()``): once the checkpoint has passed the new instance's
    start, the source table is read in key order and those rows' new column is set, page by page under the
    table's write lock; recorded ``column-filled``. Only the process that writes the table's group does it.
    ``false``: those rows keep NULL (or the target default) until ``mssql2pg reconcile --repair``."""

    cdc_retention_fallback: Duration = Field(default=259_200.0, gt=0)
    """The source's CDC cleanup retention assumed when it cannot be read (on SQL Server it is in
    ``msdb.dbo.cdc_jobs``, which the pipeline's login usually cannot read): what the retention margin
    (``mssql2pg check``, ``mssql2pg_retention_margin_seconds``) is computed against. SQL Server's default is 3
    days (4320 minutes); set it to what ``sys.sp_cdc_help_jobs`` shows for the cleanup job."""


class HttpSettings(Section):
    """The HTTP endpoint for ``/metrics``, ``/healthz`` and ``/readyz``."""

    enabled: bool = True
    """Serve the endpoint at all."""

    host: str = "127.0.0.1"
    """Address to listen on. Use ``0.0.0.0`` inside a container so Prometheus can scrape it."""

    port: int = Field(default=9400, ge=0, le=65535)
    """Port to listen on; ``0`` picks a free port (it is logged at start-up)."""


class LogSettings(Section):
    """Logging (structured, to stdout)."""

    level: LogLevel = "info"
    """``debug``, ``info``, ``warning``, ``error`` or ``critical`` (any case)."""

    format: LogFormat = "auto"
    """``json`` (one object per line, for log collectors), ``console`` (for people), or ``auto``: console
    when stdout is a terminal, JSON otherwise."""

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


# ------------------------------------------------------------------------------------------------------- root


def _table_list(value: Any) -> Any:
    """Accept a comma-separated string (handy in ``MSSQL2PG__TABLES``) and plain-string entries."""
    if isinstance(value, str):
        value = [part for part in _split_commas(value) if part]
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value


def _split_commas(text: str) -> list[str]:
    """Split on commas that are not inside ``[...]`` or ``"..."``."""
    parts: list[str] = []
    buf: list[str] = []
    close: str | None = None
    for ch in text:
        if close is None and ch in '["':
            close = "]" if ch == "[" else '"'
        elif ch == close:
            close = None
        elif ch == "," and close is None:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf).strip())
    return parts


class Config(Section):
    """The whole configuration. Build it with :func:`mssql2pg.config.load_config`."""

    source: SourceConfig
    """The SQL Server database to read changes from (or the emulator)."""

    target: TargetConfig
    """The PostgreSQL database to write to."""

    tables: Annotated[tuple[TableEntry, ...], Field(min_length=1)]
    """The tables to replicate: names, wildcards, or entries with options. Only tables with CDC enabled can
    match."""

    defaults: Defaults = Defaults()
    """Per-table options that apply unless a table entry overrides them."""

    pipeline: PipelineSettings = PipelineSettings()
    """Pipeline identity."""

    reader: ReaderSettings = ReaderSettings()
    """Reading changes."""

    apply: ApplySettings = ApplySettings()
    """Applying changes."""

    snapshot: SnapshotSettings = SnapshotSettings()
    """Initial load of tables met for the first time."""

    retry: RetrySettings = RetrySettings()
    """Retrying transient failures."""

    stale_after: Duration = Field(default=86_400.0, gt=0)
    """A change whose source commit time is older than this when it is applied is a *stale event*: it is
    applied, flagged, counted in metrics and logged as a warning. "Now" is taken on the source's clock (see
    ``clock_skew``), so a skewed source clock neither hides nor invents stale events."""

    clock_skew: ClockSkewSettings = ClockSkewSettings()
    """Clock skew between source and target: measured, exported, warned about and corrected for."""

    schema_evolution: SchemaEvolutionSettings = SchemaEvolutionSettings()
    """Following schema changes at the source."""

    http: HttpSettings = HttpSettings()
    """Metrics and health endpoint."""

    log: LogSettings = LogSettings()
    """Logging."""

    _split_tables = field_validator("tables", mode="before")(_table_list)

    def secrets(self) -> list[str]:
        """Every secret value in the configuration, for log redaction (``register_secret``)."""
        return [db.password.get_secret_value() for db in (self.source, self.target) if db.password is not None]
