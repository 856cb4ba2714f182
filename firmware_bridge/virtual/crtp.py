"""CRTP as it travels over cflib's UDP driver: one datagram is one packet, `[header][payload 0..30 bytes]`.

The header is `port << 4 | channel`; cflib also sets bits 2-3 (a bootloader legacy), which the firmware
ignores and so does this decoder. Replies carry `port << 4 | channel`, as the firmware sends them.
See shared/reference/crtp.md for the ports and every payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

MAX_PAYLOAD = 30  # CRTP_MAX_DATA_SIZE


class Port(IntEnum):
    CONSOLE = 0
    PARAM = 2
    COMMANDER = 3
    MEMORY = 4
    LOG = 5
    LOCALIZATION = 6
    GENERIC_SETPOINT = 7
    HIGH_LEVEL = 8
    SUPERVISOR = 9
    PLATFORM = 13
    LINK = 15


@dataclass(frozen=True)
class Packet:
    port: int
    channel: int
    data: bytes

    @staticmethod
    def parse(datagram: bytes) -> "Packet | None":
        """The packet in one datagram, or None for an empty or oversized datagram (no CRTP packet)."""
        if not 1 <= len(datagram) <= MAX_PAYLOAD + 1:
            return None
        header = datagram[0]
        return Packet(port=header >> 4, channel=header & 0x03, data=bytes(datagram[1:]))

    def encode(self) -> bytes:
        return bytes(((self.port & 0x0F) << 4 | (self.channel & 0x03),)) + self.data[:MAX_PAYLOAD]


def packet(port: int, channel: int, data: bytes) -> bytes:
    """The datagram of a reply from the drone."""
    return Packet(port, channel, data).encode()
