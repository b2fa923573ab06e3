"""TLS on both connections, in one place: libpq's ``sslmode`` for the target (pg8000), ``source.encrypt`` for
SQL Server (python-tds).

pg8000's ``ssl_context`` has four meanings: ``False`` plain; ``None`` TLS when the server offers it, without
verifying anything, else plain; ``True`` TLS required, nothing verified; an ``ssl.SSLContext`` TLS required
with that context's checks. libpq's modes map onto them as follows (:func:`target_tls`):

========== ===================================================================================================
disable    ``False``.
allow      ``False`` first; when the server refuses a plain connection (pg_hba has no entry for it, SQLSTATE
           28000) a second connection with TLS that verifies nothing. pg8000 cannot upgrade a connection.
prefer     a context that verifies nothing; when the server answers the TLS request with "no", a second
           connection in plain (pg8000 only falls back by itself without a client certificate).
require    a context that verifies nothing; with ``sslrootcert`` set it verifies the chain (libpq does so).
verify-ca  a context that checks the chain against ``sslrootcert``, not the host name.
verify-full a context that checks the chain and that the certificate names the host connected to.
========== ===================================================================================================

A client certificate (``sslcert``/``sslkey``) is loaded into the context of every mode but ``disable``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pytds.tls

from mssql2pg.config import SourceConfig, TargetConfig
from mssql2pg.errors import ConfigError

SslContext = ssl.SSLContext | Literal[False]
"""What pg8000's ``ssl_context`` gets from us: a context (TLS required, its checks) or ``False`` (plain)."""


@dataclass(frozen=True)
class TargetTls:
    """What to hand pg8000 first, and, for ``allow`` and ``prefer``, what to try when the server refuses it."""

    first: SslContext
    fallback: SslContext | None = None
    """``False`` (plain) when the server refuses TLS (``prefer``); a context when it refuses plain (``allow``)."""


def target_tls(target: TargetConfig) -> TargetTls:
    """The TLS settings of ``target`` for pg8000. Certificate files are read here, so a missing or unreadable
    CA, certificate or key is a configuration error naming the key and the file, at start-up."""
    mode = target.sslmode
    if mode == "disable":
        return TargetTls(False)
    if mode == "allow":
        return TargetTls(False, fallback=_unverified(target))
    if mode == "prefer":
        return TargetTls(_unverified(target), fallback=False)
    if mode == "require" and target.sslrootcert is None:
        return TargetTls(_unverified(target))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = mode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    if target.sslrootcert == "system":
        context.load_default_certs()
    else:
        _load("target.sslrootcert", target.sslrootcert, lambda: context.load_verify_locations(target.sslrootcert))
    _client_certificate(context, target)
    return TargetTls(context)


def _unverified(target: TargetConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _client_certificate(context, target)
    return context


def _client_certificate(context: ssl.SSLContext, target: TargetConfig) -> None:
    if target.sslcert is not None:
        cert, key = target.sslcert, target.sslkey
        _load("target.sslcert/sslkey", cert, lambda: context.load_cert_chain(certfile=cert, keyfile=key))


def _load(key: str, path: object, load: Callable[[], None]) -> None:
    try:
        load()
    except OSError as exc:  # ssl.SSLError is one too (not PEM, key does not match the certificate)
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        msg = f"{key}: cannot load {path}: {reason}"
        raise ConfigError(msg, hint="give a readable PEM file") from None


PYOPENSSL_HINT = (
    "pip install pyOpenSSL (a dependency of mssql2pg: reinstall it, e.g. pip install --force-reinstall mssql2pg)"
)


def source_tls_args(source: SourceConfig) -> dict[str, object]:
    """python-tds ``connect()`` arguments for ``source.encrypt``: none for ``off`` (python-tds then tells the
    server it does not support encryption); else ``cafile`` (python-tds encrypts exactly when it is given, and
    then verifies the chain against it) and ``validate_host``. The SQLAlchemy dialect drops ``cafile`` from the
    URL's query, so these go to the engine as ``connect_args``. Without pyOpenSSL python-tds cannot encrypt:
    that is a configuration error here, at start-up, rather than a ``ValueError`` at the first connection."""
    if source.encrypt == "off":
        return {}
    if not pytds.tls.OPENSSL_AVAILABLE:
        msg = f"source.encrypt {source.encrypt} needs pyOpenSSL, which cannot be imported"
        raise ConfigError(msg, hint=PYOPENSSL_HINT)
    if source.ca_file is not None and not source.ca_file.is_file():
        msg = f"source.ca_file: cannot load {source.ca_file}: no such file"
        raise ConfigError(msg, hint="give a readable PEM file")
    return {"cafile": str(source.ca_file), "validate_host": source.check_hostname, "enc_login_only": False}
