"""Log blocks of one drone (port 5, channel 1 commands; channel 2 data), as the firmware's log.c keeps them.

Every control command is answered `cmd block_id errno`. Limits are the firmware's: 16 blocks, 128
variables in all, 26 value bytes per block. A block's values go out in the type the client asked for
(`fetch` type, the low nibble of each variable's type byte), converted from the variable's own type.
Periods run on the drone's clock; a period of 0 sends the block once. Raw-memory variables (id 0xFFFF)
have no memory to read here and are refused with ENOENT.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from nanoswarm.firmware_bridge.virtual.toc import LOG_TYPES, CType, Toc, Variable

MAX_BLOCKS = 16
MAX_VARIABLES = 128
MAX_BLOCK_BYTES = 26
MEMORY_VARIABLE = 0xFFFF

CREATE, APPEND, DELETE, START, STOP, RESET, CREATE_V2, APPEND_V2, START_V2 = 0, 1, 2, 3, 4, 5, 6, 7, 8


@dataclass
class Block:
    ops: list[tuple[Variable, CType]] = field(default_factory=list)
    period_s: float = 0.0
    next_due: float = 0.0
    running: bool = False

    @property
    def size(self) -> int:
        return sum(fetch.size for _, fetch in self.ops)


class LogBlocks:
    """The log blocks one drone holds for its client."""

    def __init__(self, toc: Toc):
        self.toc = toc
        self.blocks: dict[int, Block] = {}

    def control(self, data: bytes, now: float) -> bytes:
        """Run one control command; returns its reply payload `cmd block_id errno`."""
        if not data:
            return b""
        command = data[0]
        block_id = data[1] if len(data) > 1 else 0
        result = self._run(command, block_id, data[2:], now)
        return bytes((command, block_id, result))

    def _run(self, command: int, block_id: int, args: bytes, now: float) -> int:
        if command == RESET:
            self.blocks.clear()
            return 0
        if command in (CREATE_V2, APPEND_V2):
            return self._add(command == CREATE_V2, block_id, args)
        if command not in (DELETE, START, STOP, START_V2):
            return errno.ENOEXEC  # also the V1 create/append, gone from current firmware
        block = self.blocks.get(block_id)
        if block is None:
            return errno.ENOENT
        if command == DELETE:
            del self.blocks[block_id]
        elif command == STOP:
            block.running = False
        else:
            if len(args) < (2 if command == START_V2 else 1):
                return errno.EINVAL
            period_ms = struct.unpack_from("<H", args)[0] if command == START_V2 else 10 * args[0]
            block.period_s = period_ms / 1000.0
            block.running = True
            block.next_due = now
        return 0

    def _add(self, create: bool, block_id: int, args: bytes) -> int:
        if create and block_id in self.blocks:
            return errno.EEXIST
        if not create and block_id not in self.blocks:
            return errno.ENOENT
        if create and len(self.blocks) >= MAX_BLOCKS:
            return errno.ENOMEM
        block = Block() if create else self.blocks[block_id]
        ops = list(block.ops)
        in_use = sum(len(b.ops) for b in self.blocks.values()) - (0 if create else len(block.ops))
        for offset in range(0, len(args) - len(args) % 3, 3):
            type_byte, ident = struct.unpack_from("<BH", args, offset)
            fetch = LOG_TYPES.get(type_byte & 0x0F)
            if fetch is None:
                return errno.EINVAL
            if sum(f.size for _, f in ops) + fetch.size > MAX_BLOCK_BYTES:
                return errno.E2BIG
            if in_use + len(ops) >= MAX_VARIABLES:
                return errno.ENOMEM
            variable = self.toc.get(ident) if ident != MEMORY_VARIABLE else None
            if variable is None:
                return errno.ENOENT
            ops.append((variable, fetch))
        block.ops = ops
        self.blocks[block_id] = block
        return 0

    def due(self, drone: int, now: float) -> list[bytes]:
        """The data payloads (`block_id, u24 timestamp ms, values`) of the running blocks due at `now`."""
        payloads = []
        stamp = struct.pack("<I", int(now * 1000.0) & 0xFFFFFF)[:3]
        for block_id, block in self.blocks.items():
            if not block.running or now + 1e-9 < block.next_due:
                continue
            values = b"".join(fetch.pack(variable.read(drone)) for variable, fetch in block.ops)
            payloads.append(bytes((block_id,)) + stamp + values)
            if block.period_s > 0:
                # On schedule while the clock keeps up; after a late tick the schedule restarts from now
                # rather than sending a burst to catch up.
                block.next_due += block.period_s
                if block.next_due + 1e-9 < now:
                    block.next_due = now + block.period_s
            else:
                block.running = False
        return payloads
