"""Driver exceptions → TransientError | TerminalError (placeholder; see below)."""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KEY_VALUE = re.compile(r"(?i)\b(?P<key>password|passwd|pwd)(?P<sep>\s*[=:]\s*)(?P<q>['\"]?)(?P<value>[^'\"\s;,)}]*)")


def scrub(text: str) -> str:
    """Remove credentials from a message: ``user:pass@`` in URLs and ``password=...`` style pairs."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}***", text)
