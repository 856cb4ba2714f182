"""The commander of N virtual drones: the setpoint each drone flies, where it came from and how old it is.

As in the firmware's commander.c, every drone holds one current setpoint with a timestamp and a priority.
Streamed setpoints (RPYT on port 3, generic setpoints on port 7, priority 2) overwrite it and stop the
high-level commander; the high-level commander (priority 1) writes its own each tick only while no stream
holds a higher priority; `notify_setpoint_stop` relaxes the priority and sets the stream's timestamp back
so that it expires `remain_valid_ms` later. The supervisor's watchdog reads the setpoint's age.

Decoders turn each packet into SI units and the simulator's frames (shared/reference/crtp.md §4):
- the firmware's legacy pitch is inverted (cflib's `send_setpoint` negates it on the wire), so the
  attitude here is pitch = -wire pitch, a rotation about the body y axis (left) that tilts the nose down;
- yaw rates of the RPYT and legacy generic types are clockwise-positive on the wire, the others
  counter-clockwise-positive; position setpoints' yaw is in degrees;
- full-state setpoints fly their position with their velocity as feed-forward (acceleration, attitude
  and rates are not used); manual setpoints in rate mode, and types cflib does not send (CPPM emulation,
  altitude hold), are dropped.
The stock controller stand-in flies yaw 0 in position modes (sim.controller.geometric_control), so yaw
setpoints are accepted and not flown; yaw rates are flown in the attitude modes.
Values are checked: a setpoint with NaN or infinite values is dropped, and positions, velocities and
attitudes are clamped to ranges a Crazyflie can fly (a hostile packet cannot make the physics diverge).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from nanoswarm.firmware_bridge.virtual.errors import MalformedPacket

XY_POSITION, XY_WORLD_VELOCITY, XY_BODY_VELOCITY, XY_ATTITUDE = 0, 1, 2, 3
Z_POSITION, Z_VELOCITY, Z_THRUST = 0, 1, 2
PRIORITY_LOWEST, PRIORITY_HIGH_LEVEL, PRIORITY_STREAM = 0, 1, 2

POSITION_LIMIT_M = 100.0
VELOCITY_LIMIT_M_S = 10.0
ANGLE_LIMIT_RAD = math.radians(60.0)
RATE_LIMIT_RAD_S = math.radians(720.0)
THRUST_FULL = 65535.0
WATCHDOG_CUT_MS = 2000  # COMMANDER_WDT_TIMEOUT_SHUTDOWN: what notify_setpoint_stop sets the timestamp back from

STOP, VELOCITY_WORLD_LEGACY, ZDISTANCE_LEGACY, HOVER_LEGACY, FULL_STATE, POSITION = 0, 1, 2, 5, 6, 7
VELOCITY_WORLD, ZDISTANCE, HOVER, MANUAL = 8, 9, 10, 11
FOUR_FLOATS = struct.Struct("<ffff")
FULL_STATE_FORMAT = struct.Struct("<hhhhhhhhhIhhh")
RPYT_FORMAT = struct.Struct("<fffH")
MANUAL_FORMAT = struct.Struct("<fffHB")
NOTIFY_STOP_FORMAT = struct.Struct("<BI")


@dataclass(frozen=True)
class Setpoint:
    """One decoded setpoint (SI units, world frame unless said otherwise)."""

    off: bool = False                          # motors off (a stop setpoint)
    xy: int = XY_POSITION
    z: int = Z_POSITION
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    vel: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world; body frame for XY_BODY_VELOCITY
    roll: float = 0.0                          # rad
    pitch: float = 0.0                         # rad, nose down positive
    yaw_rate: float = 0.0                      # rad/s, counter-clockwise seen from above
    thrust: float = 0.0                        # command fraction 0..1 per motor (Z_THRUST)


def _finite(values: tuple[float, ...]) -> tuple[float, ...]:
    if not all(math.isfinite(v) for v in values):
        raise MalformedPacket("setpoint with NaN or infinite values")
    return values


def _clamp(value: float, limit: float) -> float:
    return min(max(value, -limit), limit)


def _position(x: float, y: float, z: float) -> tuple[float, float, float]:
    return (_clamp(x, POSITION_LIMIT_M), _clamp(y, POSITION_LIMIT_M), _clamp(z, POSITION_LIMIT_M))


def _velocity(x: float, y: float, z: float) -> tuple[float, float, float]:
    return (_clamp(x, VELOCITY_LIMIT_M_S), _clamp(y, VELOCITY_LIMIT_M_S), _clamp(z, VELOCITY_LIMIT_M_S))


def _attitude(roll_deg: float, wire_pitch_deg: float, yaw_rate_deg: float) -> dict[str, float]:
    return {"roll": _clamp(math.radians(roll_deg), ANGLE_LIMIT_RAD),
            "pitch": _clamp(-math.radians(wire_pitch_deg), ANGLE_LIMIT_RAD),
            "yaw_rate": _clamp(math.radians(yaw_rate_deg), RATE_LIMIT_RAD_S)}


def _unpack(fmt: struct.Struct, data: bytes) -> tuple:
    if len(data) < fmt.size:
        raise MalformedPacket(f"setpoint of {len(data)} bytes, its type needs {fmt.size}")
    return fmt.unpack_from(data)


def decode_rpyt(data: bytes, thrust_locked: bool) -> Setpoint:
    """Port 3: roll, pitch (deg, inverted on the wire), yaw rate (deg/s, clockwise), thrust 0-65535; while the
    thrust lock holds (until one packet with thrust 0), the thrust is 0."""
    roll, pitch, yaw_rate, thrust = _unpack(RPYT_FORMAT, data)
    _finite((roll, pitch, yaw_rate))
    return Setpoint(xy=XY_ATTITUDE, z=Z_THRUST, thrust=0.0 if thrust_locked else thrust / THRUST_FULL,
                    **_attitude(roll, pitch, -yaw_rate))


def decode_generic(data: bytes) -> Setpoint:
    """Port 7 channel 0: one generic setpoint, by its type byte."""
    if not data:
        raise MalformedPacket("empty generic setpoint")
    kind, body = data[0], data[1:]
    if kind == STOP:
        return Setpoint(off=True)
    if kind == FULL_STATE:
        x, y, z, vx, vy, vz, *_ = _unpack(FULL_STATE_FORMAT, body)
        return Setpoint(pos=_position(x / 1000.0, y / 1000.0, z / 1000.0),
                        vel=_velocity(vx / 1000.0, vy / 1000.0, vz / 1000.0))
    if kind == MANUAL:
        roll, pitch, yaw_rate, thrust, rate_mode = _unpack(MANUAL_FORMAT, body)
        if rate_mode:
            raise MalformedPacket("manual setpoints in rate mode are not modelled")
        _finite((roll, pitch, yaw_rate))
        return Setpoint(xy=XY_ATTITUDE, z=Z_THRUST, thrust=thrust / THRUST_FULL, **_attitude(roll, pitch, yaw_rate))
    if kind not in (VELOCITY_WORLD_LEGACY, ZDISTANCE_LEGACY, HOVER_LEGACY, POSITION, VELOCITY_WORLD, ZDISTANCE, HOVER):
        raise MalformedPacket(f"generic setpoint type {kind} is not modelled")
    a, b, c, d = _finite(_unpack(FOUR_FLOATS, body))
    yaw_sign = -1.0 if kind in (VELOCITY_WORLD_LEGACY, ZDISTANCE_LEGACY, HOVER_LEGACY) else 1.0
    if kind == POSITION:                                   # x, y, z, yaw (deg)
        return Setpoint(pos=_position(a, b, c))
    if kind in (VELOCITY_WORLD, VELOCITY_WORLD_LEGACY):    # vx, vy, vz, yaw rate
        return Setpoint(xy=XY_WORLD_VELOCITY, z=Z_VELOCITY, vel=_velocity(a, b, c),
                        yaw_rate=_clamp(math.radians(yaw_sign * d), RATE_LIMIT_RAD_S))
    if kind in (ZDISTANCE, ZDISTANCE_LEGACY):              # roll, pitch, yaw rate, z
        return Setpoint(xy=XY_ATTITUDE, pos=_position(0.0, 0.0, d), **_attitude(a, b, yaw_sign * c))
    return Setpoint(xy=XY_BODY_VELOCITY, vel=_velocity(a, b, 0.0), pos=_position(0.0, 0.0, d),   # hover
                    yaw_rate=_clamp(math.radians(yaw_sign * c), RATE_LIMIT_RAD_S))


class Commander:
    """The current setpoint of N drones (rows), with its timestamp and priority."""

    def __init__(self, n: int):
        self.received = np.zeros(n, dtype=bool)     # any setpoint since start: without one, the motors stay off
        self.off = np.zeros(n, dtype=bool)
        self.xy = np.full(n, XY_POSITION)
        self.z = np.full(n, Z_POSITION)
        self.pos = np.zeros((n, 3))
        self.vel = np.zeros((n, 3))
        self.roll = np.zeros(n)
        self.pitch = np.zeros(n)
        self.yaw_rate = np.zeros(n)
        self.thrust = np.zeros(n)
        self.timestamp = np.zeros(n)
        self.priority = np.full(n, PRIORITY_LOWEST)
        self.thrust_locked = np.ones(n, dtype=bool)

    def accepts(self, priority: int) -> np.ndarray:
        return priority >= self.priority

    def write(self, drone: int, setpoint: Setpoint, now: float, priority: int = PRIORITY_STREAM) -> None:
        """commanderSetSetpoint for one drone: written if `priority` is at least the current one."""
        if priority < self.priority[drone]:
            return
        self.received[drone] = True
        self.off[drone] = setpoint.off
        self.xy[drone], self.z[drone] = setpoint.xy, setpoint.z
        self.pos[drone], self.vel[drone] = setpoint.pos, setpoint.vel
        self.roll[drone], self.pitch[drone] = setpoint.roll, setpoint.pitch
        self.yaw_rate[drone], self.thrust[drone] = setpoint.yaw_rate, setpoint.thrust
        self.timestamp[drone] = now
        self.priority[drone] = priority

    def write_positions(self, rows: np.ndarray, pos: np.ndarray, vel: np.ndarray, off: np.ndarray, now: float
                        ) -> None:
        """The high-level commander's setpoints for the drones `rows` (a mask it has already checked with
        `accepts`): positions with velocity feed-forward, or motors off."""
        self.received |= rows
        self.off = np.where(rows, off, self.off)
        self.xy = np.where(rows, XY_POSITION, self.xy)
        self.z = np.where(rows, Z_POSITION, self.z)
        self.pos = np.where(rows[:, None], pos, self.pos)
        self.vel = np.where(rows[:, None], vel, self.vel)
        self.yaw_rate = np.where(rows, 0.0, self.yaw_rate)
        self.timestamp = np.where(rows, now, self.timestamp)
        self.priority = np.where(rows, PRIORITY_HIGH_LEVEL, self.priority)

    def rpyt(self, drone: int, data: bytes, now: float) -> None:
        setpoint = decode_rpyt(data, bool(self.thrust_locked[drone]))
        if RPYT_FORMAT.unpack_from(data)[3] == 0:
            self.thrust_locked[drone] = False
        self.write(drone, setpoint, now)

    def notify_stop(self, drone: int, data: bytes, now: float) -> None:
        """Port 7 channel 1: the streamed setpoint stays valid `remain_valid_ms` more, and any source may
        take over at once."""
        kind, remain_ms = _unpack(NOTIFY_STOP_FORMAT, data)
        if kind != 0:
            raise MalformedPacket(f"meta command {kind} is unknown")
        self.timestamp[drone] = now - (WATCHDOG_CUT_MS - remain_ms) / 1000.0
        self.priority[drone] = PRIORITY_LOWEST

    def age(self, now: float) -> np.ndarray:
        return now - self.timestamp

    def motors_off(self, now: float) -> np.ndarray:
        """Drones whose setpoint stops the motors: none received yet, one older than the watchdog's cut (the
        commander then hands out the null setpoint), a stop setpoint, or a thrust of 0 (with which the
        firmware's controllers stop the motors; cflib's close_link sends one)."""
        stale = self.age(now) > WATCHDOG_CUT_MS / 1000.0
        return ~self.received | stale | self.off | ((self.z == Z_THRUST) & (self.thrust == 0.0))
