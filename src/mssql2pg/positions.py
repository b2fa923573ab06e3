"""Log sequence numbers as a value type.

SQL Server identifies every log record by a 10-byte LSN: 4 bytes virtual-log-file sequence, 4 bytes
log-block number, 2 bytes slot, big-endian. Unsigned byte-wise comparison equals log order, which is
also how PostgreSQL compares ``bytea`` (the emulator stores LSNs that way). Passing LSNs around as loose
bytes or strings invites ordering and restart bugs, so everything that crosses a module boundary is an
:class:`Lsn`.

``Lsn.NULL`` stands for SQL Server's NULL LSN (e.g. ``fn_cdc_get_max_lsn()`` before the capture job ever
ran). It sorts below every real LSN, as Debezium's ``Lsn.compareTo`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

LSN_SIZE = 10
_MAX_INT = (1 << (8 * LSN_SIZE)) - 1


@dataclass(frozen=True, slots=True)
class Lsn:
    """A SQL Server LSN; ``raw`` is ``None`` for the NULL LSN."""

    raw: bytes | None

    NULL: ClassVar[Lsn]
    ZERO: ClassVar[Lsn]
    MAX: ClassVar[Lsn]

    def __post_init__(self) -> None:
        if self.raw is not None and len(self.raw) != LSN_SIZE:
            msg = f"an LSN has {LSN_SIZE} bytes, got {len(self.raw)}: {self.raw!r}"
            raise ValueError(msg)

    @classmethod
    def from_bytes(cls, value: bytes | bytearray | memoryview | None) -> Lsn:
        """Build from a driver value; ``None`` gives :attr:`NULL`."""
        return cls.NULL if value is None else cls(bytes(value))

    @classmethod
    def from_int(cls, value: int) -> Lsn:
        if not 0 <= value <= _MAX_INT:
            msg = f"LSN integer out of range: {value}"
            raise ValueError(msg)
        return cls(value.to_bytes(LSN_SIZE, "big"))

    @classmethod
    def parse(cls, text: str) -> Lsn:
        """Parse ``0000002d:00000580:001d``, ``0x0000002D00000580001D`` or ``NULL``."""
        cleaned = text.strip()
        if cleaned.upper() == "NULL":
            return cls.NULL
        if cleaned[:2].lower() == "0x":
            cleaned = cleaned[2:]
        cleaned = cleaned.replace(":", "")
        if len(cleaned) != 2 * LSN_SIZE:
            msg = f"not an LSN (want 20 hex digits, optionally as xxxxxxxx:xxxxxxxx:xxxx): {text!r}"
            raise ValueError(msg)
        try:
            return cls(bytes.fromhex(cleaned))
        except ValueError as exc:
            msg = f"not an LSN (bad hex digits): {text!r}"
            raise ValueError(msg) from exc

    @property
    def is_null(self) -> bool:
        return self.raw is None

    def to_int(self) -> int:
        if self.raw is None:
            msg = "the NULL LSN has no numeric value"
            raise ValueError(msg)
        return int.from_bytes(self.raw, "big")

    def increment(self) -> Lsn:
        """The next LSN, like ``sys.fn_cdc_increment_lsn``: +1 on the whole 80-bit value."""
        return Lsn.from_int(self.to_int() + 1)

    def decrement(self) -> Lsn:
        """The previous LSN, like ``sys.fn_cdc_decrement_lsn``."""
        return Lsn.from_int(self.to_int() - 1)

    def hex(self) -> str:
        """T-SQL literal form, ``0x0000002D00000580001D``."""
        return "NULL" if self.raw is None else "0x" + self.raw.hex().upper()

    def __str__(self) -> str:
        if self.raw is None:
            return "NULL"
        h = self.raw.hex()
        return f"{h[:8]}:{h[8:16]}:{h[16:]}"

    def __repr__(self) -> str:
        return f"Lsn({self})"

    # Written out rather than derived by functools.total_ordering: LSNs are compared several times per change
    # on the hot path, and the derived methods cost a second call each. ``None`` maps to ``b""``, which sorts
    # below every 10-byte value: the NULL LSN is the lowest.
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return (self.raw or b"") < (other.raw or b"")

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return (self.raw or b"") <= (other.raw or b"")

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return (self.raw or b"") > (other.raw or b"")

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return (self.raw or b"") >= (other.raw or b"")

    def __bool__(self) -> bool:
        return self.raw is not None


Lsn.NULL = Lsn(None)
Lsn.ZERO = Lsn(bytes(LSN_SIZE))
Lsn.MAX = Lsn(b"\xff" * LSN_SIZE)
