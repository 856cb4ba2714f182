"""The wire format of the serial hardware-in-the-loop link, the Python mirror of export/hil/nsw_hil.h.

A frame is `0x00, COBS(header + payload + crc), 0x00`: COBS (consistent overhead byte stuffing) leaves no
zero inside a frame, so a zero always ends one and both sides fall back into step at the next delimiter
after line noise, a lost byte or a reset. The header is protocol version, message type, sequence number
and payload length (`<BBHH`); the CRC is CRC-16/CCITT-FALSE of header and payload. Everything is
little-endian. `FrameReader` cuts a byte stream into frames and reports damaged ones as `BadFrame`
values rather than exceptions: on a serial line damage is an expected event, counted and survived.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBHH")   # version, type, sequence number, payload length
CRC = struct.Struct("<H")
INFO = struct.Struct("<HHHHIII")  # n_in, n_out, neighbours, max payload, policy id, frames ok, frames bad
ERROR = struct.Struct("<BH")      # code, detail
SEQ_UNKNOWN = 0xFFFF              # an ERROR about a frame whose sequence number could not be read
NO_LAYOUT = 0xFFFF                # INFO's neighbours when policy.h declares no observation layout
MAX_PAYLOAD = 0xFFFF
MIN_FRAME = HEADER.size + CRC.size


class MessageType(IntEnum):
    HELLO = 0x01
    INFER = 0x02
    INFO = 0x81
    ACTION = 0x82
    ERROR = 0xFF


class ErrorCode(IntEnum):
    BAD_CRC = 1        # the board received a frame whose CRC failed
    BAD_FRAME = 2      # not COBS, or shorter than header and CRC
    TOO_LONG = 3       # longer than the board's buffer (detail: its largest payload)
    BAD_VERSION = 4    # detail: the protocol version the board speaks
    UNKNOWN_TYPE = 5   # detail: the message type it does not know
    BAD_LENGTH = 6     # detail: the payload size it expected


@dataclass(frozen=True)
class Frame:
    """A frame that arrived intact (COBS, size and CRC all good)."""

    type: int
    seq: int
    payload: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class BadFrame:
    """Bytes between two delimiters that are no intact frame; `reason` is cobs, short, crc, length or too long."""

    reason: str
    size: int


@dataclass(frozen=True)
class BoardInfo:
    """What a board says about itself in INFO."""

    n_in: int
    n_out: int
    num_neighbors: int | None   # None: its policy.h declares no observation layout
    max_payload: int
    policy_id: int              # CRC-32 of the policy.c and policy.h it was built from
    frames_ok: int              # requests it answered since start-up
    frames_bad: int             # frames it refused (damaged, unknown, wrong size) since start-up
    version: int


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR)."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """COBS of `data`: each run of up to 254 non-zero bytes, led by its length + 1; no zero byte remains."""
    out = bytearray()
    for block in data.split(b"\0"):
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes | None:
    """The data `encoded` stands for, or None when it is no valid COBS (a zero, or a block cut short)."""
    out = bytearray()
    i, n = 0, len(encoded)
    while i < n:
        code = encoded[i]
        if code == 0 or i + code > n:
            return None
        out += encoded[i + 1:i + code]
        i += code
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(message: int, seq: int, payload: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    """A frame ready for the wire, delimiters included."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a payload of {len(payload)} bytes does not fit a frame (at most {MAX_PAYLOAD})")
    body = HEADER.pack(version, message, seq, len(payload)) + payload
    return b"\0" + cobs_encode(body + CRC.pack(crc16(body))) + b"\0"


def decode_frame(encoded: bytes) -> Frame | BadFrame:
    """The frame between two delimiters (without them)."""
    body = cobs_decode(encoded)
    if body is None:
        return BadFrame("cobs", len(encoded))
    if len(body) < MIN_FRAME:
        return BadFrame("short", len(body))
    content, (crc,) = body[:-CRC.size], CRC.unpack_from(body, len(body) - CRC.size)
    if crc != crc16(content):
        return BadFrame("crc", len(body))
    version, message, seq, length = HEADER.unpack_from(content)
    if length != len(content) - HEADER.size:
        return BadFrame("length", len(body))
    return Frame(message, seq, bytes(content[HEADER.size:]), version)


def max_wire_size(max_payload: int) -> int:
    """The most bytes one encoded frame with a payload of up to `max_payload` bytes takes between delimiters."""
    body = MIN_FRAME + max_payload
    return body + body // 254 + 1


class FrameReader:
    """Cuts a received byte stream into frames; any input is accepted and memory stays bounded.

    Bytes that run longer than the largest possible frame without a delimiter are dropped up to the next
    one and reported as one `BadFrame("too long")`: garbage on the line cannot grow the buffer.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_wire = max_wire_size(max_payload)
        self._buffer = bytearray()
        self._dropped = 0     # bytes dropped from the frame being skipped (0: not skipping)

    def clear(self) -> None:
        """Forgets the partial frame held (after the input buffer was flushed)."""
        self._buffer.clear()
        self._dropped = 0

    def feed(self, data: bytes) -> list[Frame | BadFrame]:
        """The frames and damaged frames that `data` completes, in order; empty frames are skipped."""
        self._buffer += data
        found: list[Frame | BadFrame] = []
        while (end := self._buffer.find(0)) >= 0:
            chunk = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if self._dropped:
                found.append(BadFrame("too long", self._dropped + len(chunk)))
                self._dropped = 0
            elif chunk:
                found.append(decode_frame(chunk))
        if len(self._buffer) > self.max_wire:
            self._dropped += len(self._buffer)
            self._buffer.clear()
        return found


def floats_payload(values: np.ndarray) -> bytes:
    """float32 values as little-endian bytes, bit for bit (NaN payloads and signed zeros included)."""
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def parse_info(frame: Frame) -> BoardInfo:
    if len(frame.payload) < INFO.size:
        raise ValueError(f"INFO has {len(frame.payload)} bytes, protocol {PROTOCOL_VERSION} needs {INFO.size}")
    n_in, n_out, neighbors, max_payload, policy_id, ok, bad = INFO.unpack_from(frame.payload)
    return BoardInfo(n_in, n_out, None if neighbors == NO_LAYOUT else neighbors, max_payload, policy_id, ok, bad,
                     frame.version)


def parse_action(frame: Frame, n_out: int) -> tuple[np.ndarray, int]:
    """The actions (n_out,) float32 and the board's inference time in microseconds."""
    if len(frame.payload) != 4 * n_out + 4:
        raise ValueError(f"ACTION has {len(frame.payload)} bytes, {n_out} actions need {4 * n_out + 4}")
    actions = np.frombuffer(frame.payload, dtype="<f4", count=n_out).astype(np.float32)
    (micros,) = struct.unpack_from("<I", frame.payload, 4 * n_out)
    return actions, micros


def parse_error(frame: Frame) -> tuple[ErrorCode | int, int]:
    """The error code (an ErrorCode where known) and its detail."""
    code, detail = ERROR.unpack_from(frame.payload.ljust(ERROR.size, b"\0"))
    try:
        return ErrorCode(code), detail
    except ValueError:
        return code, detail
