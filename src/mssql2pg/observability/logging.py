"""Structured logs: one JSON object per line on stdout, or readable console lines on a terminal.

Every line has ``timestamp`` (UTC, ISO 8601), ``level``, ``component`` and ``event``; callers add ``table``,
``pk``, ``operation``, ``commit_lsn`` and ``tran_id`` where they apply. Errors logged with ``exc_info`` carry
``exception_type``, ``exception_message`` and ``exception`` (the stack trace).

Standard-library loggers (SQLAlchemy, pg8000, …) go through the same processors, with ``component`` set to
the logger name, so nothing reaches stdout without being redacted.

Why redaction is the last processor before rendering: secrets arrive from many directions (a URL in an
exception message from a driver, a ``password=`` in a DSN, a value a caller bound by mistake). Scrubbing the
final event dict, including the already formatted stack trace, catches them all in one place. The text is
cleaned by :func:`mssql2pg.redact.redact_text`, the same function that cleans classified errors: registered
secrets (:func:`register_secret`, called at start-up for every password and token of the configuration) are
removed wherever they appear, also URL-encoded; patterns catch secrets nobody registered.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from mssql2pg.redact import (
    REDACTED,
    clear_registered_secrets,
    is_secret_key,
    redact_text,
    register_secret,
    register_secrets,
)

LogFormat = Literal["json", "console", "auto"]


def _redact_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, MutableMapping | dict):
        return {k: (REDACTED if is_secret_key(k) else _redact_value(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact_text(str(value))


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: scrub every value (recursively) and drop values under secret-looking keys."""
    for key in list(event_dict):
        if is_secret_key(key):
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


# register_secret(s) and clear_registered_secrets are mssql2pg.redact's, re-exported because callers (the
# pipeline's start-up, the reader process) register secrets where they configure logging.
__all__ = [
    "LogFormat",
    "clear_registered_secrets",
    "configure_logging",
    "get_logger",
    "redact_event",
    "register_secret",
    "register_secrets",
]
