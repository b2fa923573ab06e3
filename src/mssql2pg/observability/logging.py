"""Structured logs: one JSON object per line on stdout, or readable console lines on a terminal.

Every line has ``timestamp`` (UTC, ISO 8601), ``level``, ``component`` and ``event``; callers add ``table``,
``pk``, ``operation``, ``commit_lsn`` and ``tran_id`` where they apply. Errors logged with ``exc_info`` carry
``exception_type``, ``exception_message`` and ``exception`` (the stack trace).

Standard-library loggers (SQLAlchemy, pg8000, …) go through the same processors, with ``component`` set to
the logger name, so nothing reaches stdout without being redacted.

Why redaction is the last processor before rendering: secrets arrive from many directions (a URL in an
exception message from a driver, a ``password=`` in a DSN, a value a caller bound by mistake). Scrubbing the
final event dict, including the already formatted stack trace, catches them all in one place. Registered
secrets (:func:`register_secret`, called by the config loader for every password and token it reads) are
removed wherever they appear, also URL-encoded; patterns catch secrets nobody registered.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO
from urllib.parse import quote, quote_plus

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "***"
LogFormat = Literal["json", "console", "auto"]

# Registered secrets shorter than this are ignored: redacting "ab" everywhere would make logs unreadable.
MIN_SECRET_LENGTH = 3

_SECRET_KEY_WORDS = ("password", "passwd", "pwd", "secret", "token", "authorization", "api_key", "apikey")
_KEY_ALTERNATION = r"password|passwd|pwd|secret|token|access_token|api[_-]?key|apikey"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  →  scheme://user:***@host
    # (greedy to the last "@" of the token, so a password with a raw "@" or "/" is still covered)
    (re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^\s'\"]+)(?=@)"), r"\g<head>***"),
    # Authorization: Bearer xyz / Basic xyz
    (
        re.compile(r"(?i)(?P<head>authorization['\"]?\s*[:=]\s*['\"]?(?:bearer|basic|token)?\s*)[^\s'\",;]+"),
        r"\g<head>***",
    ),
    (re.compile(r"(?i)(?P<head>\bbearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\g<head>***"),
    # 'password': 'x'  /  "password": "x"  (dict reprs and JSON)
    (
        re.compile(rf"(?i)(?P<head>['\"][a-z_]*(?:{_KEY_ALTERNATION})['\"]\s*:\s*)(?P<q>['\"])(?:(?!(?P=q)).)*(?P=q)"),
        r"\g<head>\g<q>***\g<q>",
    ),
    # password=x; PWD={x}; token=x&…  (DSNs, ODBC strings, query strings, keyword arguments)
    (re.compile(rf"(?i)(?P<head>\b[a-z_]*(?:{_KEY_ALTERNATION})\s*=\s*)\{{[^}}]*\}}"), r"\g<head>***"),
    (
        re.compile(rf"(?i)(?P<head>\b[a-z_]*(?:{_KEY_ALTERNATION})\s*=\s*)(?P<q>['\"]).*?(?P=q)"),
        r"\g<head>\g<q>***\g<q>",
    ),
    (re.compile(rf"(?i)(?P<head>\b[a-z_]*(?:{_KEY_ALTERNATION})\s*=\s*)[^\s;&,'\")]+"), r"\g<head>***"),
)

_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Never log ``value`` (nor its URL-encoded forms) again, wherever it appears."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def clear_registered_secrets() -> None:
    """Forget registered secrets (tests only)."""
    with _secrets_lock:
        _secrets.clear()


def redact_text(text: str) -> str:
    """Remove registered secrets and anything that looks like a credential from ``text``."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: object) -> bool:
    lowered = str(key).lower()
    return any(word in lowered for word in _SECRET_KEY_WORDS)


def _redact_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, MutableMapping | dict):
        return {k: (REDACTED if _is_secret_key(k) else _redact_value(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact_text(str(value))


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: scrub every value (recursively) and drop values under secret-looking keys."""
    for key in list(event_dict):
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def _explain_exception(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Turn ``exc_info`` into plain strings (type, message, stack trace) so redaction can see them."""
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    exc: BaseException | None
    if isinstance(exc_info, BaseException):
        exc = exc_info
    elif isinstance(exc_info, tuple):
        exc = exc_info[1]
    else:
        exc = sys.exc_info()[1]
    if exc is None:
        return event_dict
    event_dict["exception_type"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
    event_dict["exception_message"] = str(exc)
    event_dict["exception"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return event_dict


def _default_component(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    if "component" not in event_dict:
        record = event_dict.get("_record")
        event_dict["component"] = getattr(record, "name", None) or "mssql2pg"
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _default_component,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        _explain_exception,
    ]


def _renderer(fmt: LogFormat, stream: TextIO) -> Processor:
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer(default=str)


def configure_logging(level: str | int = "INFO", fmt: LogFormat = "auto", *, stream: TextIO | None = None) -> None:
    """Route structlog and standard-library logging to ``stream`` (stdout by default), redacted.

    ``fmt``: ``json`` (one object per line), ``console`` (for humans), ``auto`` (console on a terminal,
    JSON otherwise). Safe to call again (e.g. tests, or after reading the config): it replaces the handler.
    """
    out = stream if stream is not None else sys.stdout
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        msg = f"unknown log level {level!r}"
        raise ValueError(msg)
    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_event,
            _renderer(fmt, out),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name("mssql2pg")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "mssql2pg"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(component: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger with ``component`` bound (the convention every module follows)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(component=component, **context)
    return logger


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)
