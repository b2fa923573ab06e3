"""The one credential redactor, shared by classified errors and log lines.

Why one: a secret reaches text by many roads (a URL in a driver's message, a ``password=`` in a DSN, a value a
caller bound by mistake), and errors and logs see the same text - an error's message is logged, kept in a dead
letter, printed by ``mssql2pg check``. Two scrubbers drift apart and one of them misses what the other catches.

Two defences: registered secrets (:func:`register_secret`, called for every password and token the configuration
holds) are removed wherever they appear, also URL-encoded; patterns catch secrets nobody registered.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "***"

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
    # password: x  (YAML-like text in a message)
    (re.compile(rf"(?i)(?P<head>\b[a-z_]*(?:{_KEY_ALTERNATION})\s*:\s*)(?!['\"*])[^\s;&,'\")}}]+"), r"\g<head>***"),
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
    """Never show ``value`` (nor its URL-encoded forms) again, in an error or a log line."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def register_secrets(values: Iterable[str | None]) -> None:
    """:func:`register_secret` for each of ``values`` (the configuration's secrets)."""
    for value in values:
        register_secret(value)


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


def is_secret_key(key: object) -> bool:
    """A key whose value is a secret whatever it looks like (``password``, ``api_key``, ``Authorization`` ...)."""
    lowered = str(key).lower()
    return any(word in lowered for word in _SECRET_KEY_WORDS)
