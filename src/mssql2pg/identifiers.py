"""The one way identifiers reach PostgreSQL SQL text: through :func:`quote_ident`.

Values always travel as bound parameters or COPY data. Identifiers cannot be bound, so they are quoted
here, always (never "only when needed"), which makes names with quotes, spaces, semicolons, capitals or
Unicode safe and keeps their exact spelling. NUL cannot appear in a PostgreSQL identifier at all, and names
longer than PostgreSQL's 63-byte limit would be silently truncated by the server, so both are refused.
"""

from __future__ import annotations

PG_MAX_IDENTIFIER_BYTES = 63


def quote_ident(name: str) -> str:
    """Quote ``name`` (inner double quotes doubled); ValueError for names PostgreSQL cannot hold exactly."""
    if not name:
        msg = "an empty name cannot be an identifier"
        raise ValueError(msg)
    if "\x00" in name:
        msg = f"identifier contains a NUL character: {name!r}"
        raise ValueError(msg)
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = f"identifier is not valid Unicode (it holds a lone surrogate): {name!r}"
        raise ValueError(msg) from exc
    if len(encoded) > PG_MAX_IDENTIFIER_BYTES:
        msg = (
            f"identifier {name!r} is longer than PostgreSQL's {PG_MAX_IDENTIFIER_BYTES}-byte limit; "
            "map it to a shorter target name in the table options"
        )
        raise ValueError(msg)
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``schema.name``, both parts quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"
