"""One virtual Crazyflie's CRTP services: what the firmware answers on each port, for cflib and for anyone.

Implemented as the firmware does it (shared/reference/crtp.md has the wire formats):
- link (15): echo, link source ("Bitcraze Crazyflie"), null packets (answered, so cflib's scan finds us);
- platform (13): protocol version 12, firmware version and device type, the legacy arming and crash
  recovery commands, and the app channel (to the nanoswarm app, when the drone has one);
- parameters (2): TOC (V1 and V2), read, write (echoed; read-only ones are not written and not answered),
  set by name, default values; no persistent storage (answered ENOENT);
- logs (5): TOC (V2) and the log blocks of `logblocks.LogBlocks`;
- memory (4): no memories;
- commander (3), generic setpoints and notify-stop (7), high-level commander (8);
- localization (6): external position and pose, packed positions and poses (the entry whose id is this
  drone's), emergency stop and its watchdog;
- supervisor (9): state bitfield, arming, crash recovery, emergency stop and its watchdog.
A packet that cannot be read (too short, unknown command, NaN values) is dropped and counted in
`malformed`; nothing a client sends can raise out of `receive`.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np
from cflib.utils.encoding import decompress_quaternion

from nanoswarm.firmware_bridge.virtual.commander import Commander, decode_generic
from nanoswarm.firmware_bridge.virtual.crtp import MAX_PAYLOAD, Packet, Port, packet
from nanoswarm.firmware_bridge.virtual.errors import MalformedPacket
from nanoswarm.firmware_bridge.virtual.high_level import HighLevelCommander
from nanoswarm.firmware_bridge.virtual.link import Address, DroneLink
from nanoswarm.firmware_bridge.virtual.logblocks import MAX_BLOCKS, MAX_VARIABLES, LogBlocks
from nanoswarm.firmware_bridge.virtual.onboard import OnboardApps
from nanoswarm.firmware_bridge.virtual.supervisor import Supervisor
from nanoswarm.firmware_bridge.virtual.telemetry import Telemetry
from nanoswarm.firmware_bridge.virtual.toc import Toc

PROTOCOL_VERSION = 12
FIRMWARE_VERSION = b"nanoswarm-virtual"
DEVICE_TYPE = b"Crazyflie 2.1 (virtual)"
LINK_SOURCE = b"Bitcraze Crazyflie".ljust(MAX_PAYLOAD, b"\0")

TOC_ITEM_V1, TOC_INFO_V1, TOC_ITEM_V2, TOC_INFO_V2 = 0, 1, 2, 3
PARAM_TOC, PARAM_READ, PARAM_WRITE, PARAM_MISC = 0, 1, 2, 3
MISC_SET_BY_NAME, MISC_EXTENDED_TYPE, MISC_PERSISTENT_STORE, MISC_PERSISTENT_STATE = 0, 2, 3, 4
MISC_PERSISTENT_CLEAR, MISC_DEFAULT_V1, MISC_EXTENDED_TYPE_V2, MISC_DEFAULT_V2 = 5, 6, 7, 8
SUPERVISOR_INFO, SUPERVISOR_COMMAND = 0, 1
SUPERVISOR_BITFIELD, SUPERVISOR_ARM, SUPERVISOR_RECOVER, SUPERVISOR_STOP, SUPERVISOR_STOP_WATCHDOG = 0x0C, 1, 2, 3, 4
RESPONSE = 0x80
EXT_POSE, EXT_POSE_PACKED, EMERGENCY_STOP, EMERGENCY_STOP_WATCHDOG = 8, 9, 3, 4
PACKED_POSITION = struct.Struct("<Bhhh")   # id, x, y, z (mm)
PACKED_POSE = struct.Struct("<BhhhI")      # id, x, y, z (mm), compressed quaternion


@dataclass
class SwarmSystems:
    """What every virtual drone's firmware shares: the swarm's batched subsystems (one row per drone)."""

    clock: Callable[[], float]
    commander: Commander
    high_level: HighLevelCommander
    supervisor: Supervisor
    telemetry: Telemetry
    apps: OnboardApps | None
    log_toc: Toc
    param_toc: Toc
    defaults: list[np.ndarray]   # each parameter's value at start, per drone (param TOC order)


class VirtualCrazyflie:
    """The CRTP services of drone `index`; `receive` runs under the swarm's lock."""

    def __init__(self, index: int, systems: SwarmSystems, link: DroneLink):
        self.index = index
        self.systems = systems
        self.link = link
        self.log_blocks = LogBlocks(systems.log_toc)
        self.malformed = 0
        self.handlers: dict[int, Callable[[Packet], list[bytes]]] = {
            Port.LINK: self._link, Port.PLATFORM: self._platform, Port.PARAM: self._param, Port.LOG: self._log,
            Port.MEMORY: self._memory, Port.COMMANDER: self._commander, Port.GENERIC_SETPOINT: self._generic,
            Port.HIGH_LEVEL: self._high_level, Port.LOCALIZATION: self._localization,
            Port.SUPERVISOR: self._supervisor}

    def receive(self, datagram: bytes, source: Address) -> None:
        """One datagram from a client: answer it (to its sender), or drop it."""
        pk = Packet.parse(datagram)
        if pk is None:
            self.malformed += 1
            return
        if datagram != b"\xff":  # a scan's probe is not a connection: streams keep their client
            self.link.peer = source
        handler = self.handlers.get(pk.port)
        try:
            replies = handler(pk) if handler else []
        except (MalformedPacket, struct.error):
            self.malformed += 1
            return
        for reply in replies:
            self.link.send(reply, source)

    def console(self, text: str) -> None:
        """Print on the console (port 0), as the firmware's DEBUG_PRINT does, in packets of up to 30 bytes."""
        data = text.encode()
        for start in range(0, len(data), MAX_PAYLOAD):
            self.link.send(packet(Port.CONSOLE, 0, data[start:start + MAX_PAYLOAD]))

    def send_log_data(self, now: float) -> None:
        for payload in self.log_blocks.due(self.index, now):
            self.link.send(packet(Port.LOG, 2, payload))

    # ---- link and platform ---------------------------------------------------------------------------
    def _link(self, pk: Packet) -> list[bytes]:
        if pk.channel == 0:
            return [packet(Port.LINK, 0, pk.data)]
        if pk.channel == 1:
            return [packet(Port.LINK, 1, LINK_SOURCE)]
        if pk.channel == 3:
            return [packet(Port.LINK, 3, b"")]
        return []

    def _platform(self, pk: Packet) -> list[bytes]:
        if not pk.data:
            raise MalformedPacket("empty platform packet")
        command = pk.data[0]
        if pk.channel == 1:
            answers = {0: bytes((PROTOCOL_VERSION,)), 1: FIRMWARE_VERSION, 2: DEVICE_TYPE}
            return [packet(Port.PLATFORM, 1, bytes((command,)) + answers[command])] if command in answers else []
        if pk.channel == 2:
            apps = self.systems.apps
            if apps is not None:
                apps.command(self.index, pk.data, int(self.systems.clock() * 1000.0))
            return []
        if pk.channel == 0 and command == 1 and len(pk.data) >= 2:    # legacy arming request
            self.systems.supervisor.request_arming(self.index, bool(pk.data[1]))
        elif pk.channel == 0 and command == 2:                        # legacy crash recovery request
            self.systems.supervisor.request_crash_recovery(self.index)
        return []

    # ---- parameters ----------------------------------------------------------------------------------
    def _param(self, pk: Packet) -> list[bytes]:
        toc, data = self.systems.param_toc, pk.data
        if pk.channel == PARAM_TOC:
            return [packet(Port.PARAM, 0, reply) for reply in self._toc_reply(toc, data)]
        if pk.channel == PARAM_MISC:
            return [packet(Port.PARAM, 3, reply) for reply in self._param_misc(data)]
        if len(data) < 2:
            raise MalformedPacket("parameter request without an id")
        ident = struct.unpack_from("<H", data)[0]
        variable = toc.get(ident)
        if variable is None:
            return [packet(Port.PARAM, pk.channel, data[:2] + bytes((errno.ENOENT,)))]
        if pk.channel == PARAM_READ:
            return [packet(Port.PARAM, 1, data[:2] + b"\0" + variable.ctype.pack(variable.read(self.index)))]
        if pk.channel == PARAM_WRITE:
            if variable.write is None:
                return []
            if len(data) < 2 + variable.ctype.size:
                raise MalformedPacket(f"write of {variable.full_name} with {len(data) - 2} value bytes")
            variable.write(self.index, variable.ctype.unpack(data[2:]))
            return [packet(Port.PARAM, 2, data)]
        return []

    def _param_misc(self, data: bytes) -> list[bytes]:
        if not data:
            raise MalformedPacket("empty parameter misc command")
        command, toc = data[0], self.systems.param_toc
        if command == MISC_SET_BY_NAME:
            parts = data[1:].split(b"\0", 2)
            if len(parts) < 3 or not parts[2]:
                raise MalformedPacket("set-by-name without group, name and type")
            group, name, rest = parts
            ident = toc.ids.get(f"{group.decode(errors='replace')}.{name.decode(errors='replace')}")
            variable = toc.get(ident) if ident is not None else None
            head = data[:1 + len(group) + len(name) + 2]
            if variable is None:
                return [head + bytes((errno.ENOENT,))]
            if rest[0] != variable.ctype.param_code or len(rest) < 1 + variable.ctype.size:
                return [head + bytes((errno.EINVAL,))]
            if variable.write is None:
                return [head + bytes((errno.EACCES,))]
            variable.write(self.index, variable.ctype.unpack(rest[1:]))
            return [head + b"\0"]
        if len(data) < 3:
            raise MalformedPacket(f"parameter misc command {command} without an id")
        ident = struct.unpack_from("<H", data, 1)[0]
        variable = toc.get(ident)
        if command in (MISC_DEFAULT_V1, MISC_DEFAULT_V2) and variable is not None:
            default = variable.ctype.pack(self.systems.defaults[ident][self.index])
            return [data[:3] + (b"\0" if command == MISC_DEFAULT_V2 else b"") + default]
        if command in (MISC_EXTENDED_TYPE, MISC_EXTENDED_TYPE_V2, MISC_PERSISTENT_STORE, MISC_PERSISTENT_STATE,
                       MISC_PERSISTENT_CLEAR, MISC_DEFAULT_V1, MISC_DEFAULT_V2):
            return [data[:3] + bytes((errno.ENOENT,))]   # no extended types, nothing persistent
        raise MalformedPacket(f"parameter misc command {command} is unknown")

    def _toc_reply(self, toc: Toc, data: bytes) -> list[bytes]:
        if not data:
            raise MalformedPacket("empty TOC request")
        command = data[0]
        if command == TOC_INFO_V2:
            info = struct.pack("<BHI", TOC_INFO_V2, len(toc), toc.crc)
            return [info + (bytes((MAX_BLOCKS, MAX_VARIABLES)) if toc.kind == "log" else b"")]
        if command == TOC_ITEM_V2:
            if len(data) < 3:
                raise MalformedPacket("TOC item request without an id")
            ident = struct.unpack_from("<H", data, 1)[0]
            return [data[:3] + toc.describe(ident) if toc.get(ident) else bytes((TOC_ITEM_V2,))]
        if command == TOC_INFO_V1 and toc.kind == "param":
            return [struct.pack("<BBI", TOC_INFO_V1, min(len(toc), 255), toc.crc)]
        if command == TOC_ITEM_V1 and toc.kind == "param" and len(data) >= 2:
            return [data[:2] + toc.describe(data[1]) if toc.get(data[1]) else bytes((TOC_ITEM_V1,))]
        raise MalformedPacket(f"TOC command {command} is unknown")

    # ---- logs and memory -----------------------------------------------------------------------------
    def _log(self, pk: Packet) -> list[bytes]:
        if pk.channel == 0:
            return [packet(Port.LOG, 0, reply) for reply in self._toc_reply(self.systems.log_toc, pk.data)]
        if pk.channel == 1:
            reply = self.log_blocks.control(pk.data, self.systems.clock())
            return [packet(Port.LOG, 1, reply)] if reply else []
        return []

    def _memory(self, pk: Packet) -> list[bytes]:
        if pk.channel == 0 and pk.data[:1] == b"\x01":    # number of memories
            return [packet(Port.MEMORY, 0, b"\x01\x00")]
        return []

    # ---- setpoints -----------------------------------------------------------------------------------
    def _stream(self, write: Callable[[], None]) -> None:
        """A streamed setpoint: written at the stream's priority, which disables the high-level planner."""
        write()
        self.systems.high_level.disable(self.index)

    def _commander(self, pk: Packet) -> list[bytes]:
        if pk.channel == 0:
            self._stream(lambda: self.systems.commander.rpyt(self.index, pk.data, self.systems.clock()))
        return []

    def _generic(self, pk: Packet) -> list[bytes]:
        now, commander = self.systems.clock(), self.systems.commander
        if pk.channel == 0:
            setpoint = decode_generic(pk.data)
            self._stream(lambda: commander.write(self.index, setpoint, now))
        elif pk.channel == 1:
            commander.notify_stop(self.index, pk.data, now)
        return []

    def _high_level(self, pk: Packet) -> list[bytes]:
        if pk.channel == 0:
            self.systems.high_level.command(self.index, pk.data, self.systems.clock(),
                                            self.systems.telemetry.pos[self.index])
        return []

    # ---- localization and supervisor -----------------------------------------------------------------
    def _localization(self, pk: Packet) -> list[bytes]:
        t, data, me = self.systems.telemetry, pk.data, self.index & 0xFF
        if pk.channel == 0:
            t.ext_pos[self.index] = struct.unpack_from("<fff", data)
        elif pk.channel == 2:
            for (ident, x, y, z) in PACKED_POSITION.iter_unpack(data[:len(data) - len(data) % PACKED_POSITION.size]):
                if ident == me:
                    t.ext_pos[self.index] = (x / 1000.0, y / 1000.0, z / 1000.0)
        elif pk.channel == 1 and data:
            kind, body = data[0], data[1:]
            if kind == EXT_POSE:
                values = struct.unpack_from("<fffffff", body)
                t.ext_pos[self.index], t.ext_quat[self.index] = values[:3], values[3:]
            elif kind == EXT_POSE_PACKED:
                for (ident, x, y, z, quat) in PACKED_POSE.iter_unpack(body[:len(body) - len(body) % PACKED_POSE.size]):
                    if ident == me:
                        t.ext_pos[self.index] = (x / 1000.0, y / 1000.0, z / 1000.0)
                        t.ext_quat[self.index] = decompress_quaternion(quat)
            elif kind == EMERGENCY_STOP:
                self.systems.supervisor.emergency_stop(self.index)
            elif kind == EMERGENCY_STOP_WATCHDOG:
                self.systems.supervisor.emergency_stop_watchdog(self.index, self.systems.clock())
        return []

    def _supervisor(self, pk: Packet) -> list[bytes]:
        supervisor, data = self.systems.supervisor, pk.data
        if not data:
            raise MalformedPacket("empty supervisor packet")
        command = data[0]
        if pk.channel == SUPERVISOR_INFO and command == SUPERVISOR_BITFIELD:
            bits = int(self.systems.telemetry.info[self.index])
            return [packet(Port.SUPERVISOR, 0, struct.pack("<BH", RESPONSE | command, bits))]
        if pk.channel != SUPERVISOR_COMMAND:
            return []
        if command == SUPERVISOR_ARM and len(data) >= 2:
            success = supervisor.request_arming(self.index, bool(data[1]))
            armed = int(supervisor.armed[self.index])
            return [packet(Port.SUPERVISOR, 1, bytes((RESPONSE | command, int(success), armed)))]
        if command == SUPERVISOR_RECOVER:
            success = supervisor.request_crash_recovery(self.index)
            recovered = int(not supervisor.crashed[self.index])
            return [packet(Port.SUPERVISOR, 1, bytes((RESPONSE | command, int(success), recovered)))]
        if command == SUPERVISOR_STOP:
            supervisor.emergency_stop(self.index)
        elif command == SUPERVISOR_STOP_WATCHDOG:
            supervisor.emergency_stop_watchdog(self.index, self.systems.clock())
        return []
