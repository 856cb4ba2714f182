"""Tables of contents: the named, typed variables a Crazyflie exposes as logs or parameters.

A `Variable` is the firmware's (group, name, type) with a reader and, for writable parameters, a writer,
each taking the drone's index: one table serves all N drones of a swarm. A `Toc` numbers the variables
as the firmware does (in table order), encodes its TOC replies, and derives its CRC from its entries the
way the firmware chains it (crc32 over the previous CRC, the type byte and the name), so that cflib's TOC
cache (`CachedCfFactory`) hits for an unchanged table and misses for a changed one.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Callable

Reader = Callable[[int], float]
Writer = Callable[[int, float], None]


class CType(Enum):
    """C types with their log type code, parameter type byte, struct format and integer range."""

    UINT8 = (1, 0x08, "<B", 0, 2**8 - 1)
    UINT16 = (2, 0x09, "<H", 0, 2**16 - 1)
    UINT32 = (3, 0x0A, "<I", 0, 2**32 - 1)
    INT8 = (4, 0x00, "<b", -2**7, 2**7 - 1)
    INT16 = (5, 0x01, "<h", -2**15, 2**15 - 1)
    INT32 = (6, 0x02, "<i", -2**31, 2**31 - 1)
    FLOAT = (7, 0x06, "<f", None, None)
    FP16 = (8, None, "<e", None, None)

    @property
    def log_code(self) -> int:
        return self.value[0]

    @property
    def param_code(self) -> int:
        return self.value[1]

    @property
    def size(self) -> int:
        return struct.calcsize(self.value[2])

    def pack(self, value: float) -> bytes:
        """`value` in this type, converted as the firmware's log and parameter code converts (C casts: floats to
        integers truncate); values a C cast would leave undefined (NaN, out of range) saturate instead."""
        fmt, low, high = self.value[2], self.value[3], self.value[4]
        if low is None:
            limit = 65504.0 if self is CType.FP16 else 3.4028234663852886e38
            value = float(value)
            return struct.pack(fmt, value if not math.isfinite(value) else min(max(value, -limit), limit))
        value = float(value)
        whole = 0 if math.isnan(value) else int(min(max(value, low), high))
        return struct.pack(fmt, whole)

    def unpack(self, data: bytes) -> float:
        return struct.unpack(self.value[2], data[:self.size])[0]


LOG_TYPES = {t.log_code: t for t in CType}
PARAM_READ_ONLY = 0x40
MAX_NAME_CHARS = 24   # group and name together: a TOC item reply (4 bytes, two NULs) fills the 30-byte packet


@dataclass(frozen=True)
class Variable:
    group: str
    name: str
    ctype: CType
    read: Reader
    write: Writer | None = None   # parameters only; None makes a parameter read-only

    @property
    def full_name(self) -> str:
        return f"{self.group}.{self.name}"


class Toc:
    """The numbered variables of one port (log or param) and the TOC replies that describe them."""

    def __init__(self, variables: list[Variable], kind: str):
        assert kind in ("log", "param")
        names = [v.full_name for v in variables]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        assert not duplicates, f"{kind} TOC names twice: {duplicates}"
        too_long = [n for n in names if len(n) - 1 > MAX_NAME_CHARS]
        assert not too_long, f"{kind} TOC names longer than a TOC item reply holds: {too_long}"
        self.variables = variables
        self.kind = kind
        self.ids = {v.full_name: i for i, v in enumerate(variables)}
        crc = 0
        for v in variables:
            crc = zlib.crc32(struct.pack("<IB", crc, self.type_byte(v)) + v.full_name.encode(), 0)
        self.crc = crc

    def __len__(self) -> int:
        return len(self.variables)

    def get(self, ident: int) -> Variable | None:
        return self.variables[ident] if 0 <= ident < len(self.variables) else None

    def type_byte(self, v: Variable) -> int:
        if self.kind == "log":
            return v.ctype.log_code
        return v.ctype.param_code | (PARAM_READ_ONLY if v.write is None else 0)

    def describe(self, ident: int) -> bytes:
        """`type group\\0 name\\0` of a TOC item reply."""
        v = self.variables[ident]
        return bytes((self.type_byte(v),)) + v.group.encode() + b"\0" + v.name.encode() + b"\0"
