"""The high-level commander of N virtual drones (port 8): take-off, land, go-to and stop, planned onboard.

Each command plans a trajectory from where the drone is (its current high-level setpoint while one is
flying, else its estimated position) to the target, over the command's duration. As the firmware's
planner does, it follows a 7th-order polynomial with zero velocity, acceleration and jerk at both ends
(or a straight line at constant speed for a linear go-to); between commands it holds the last target.
The planner is STOPPED at start, after `stop` and after a finished landing: it then writes motors-off
setpoints. Flying or landing, it writes its position and velocity. Either way it writes every tick at the
high-level priority, which feeds the commander watchdog, unless a streamed setpoint has DISABLED it
(commander.c), after which it writes nothing until its next command. Take-off is refused while the
planner flies or lands, landing unless it flies (as the firmware).
Targets and heights are absolute (take-off and land heights are z in the world frame); a relative go-to
is relative to the planner's current setpoint. Commands carry a group mask: 0 addresses every drone,
otherwise the drone obeys when the mask shares a bit with its own (set_group_mask; 0 at start).
Yaw targets are accepted and not flown (the stock controller stand-in flies yaw 0); spirals and uploaded
trajectories (they need the memory port) are not modelled and are dropped.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from nanoswarm.firmware_bridge.virtual.commander import POSITION_LIMIT_M, PRIORITY_HIGH_LEVEL, Commander
from nanoswarm.firmware_bridge.virtual.errors import MalformedPacket

DISABLED, STOPPED, FLYING, LANDING = 0, 1, 2, 3
SET_GROUP_MASK, TAKEOFF, LAND, STOP, GO_TO, TAKEOFF_2, LAND_2, GO_TO_2 = 0, 1, 2, 3, 4, 7, 8, 12
MIN_DURATION_S = 0.01

FORMATS = {
    SET_GROUP_MASK: struct.Struct("<B"),          # mask
    TAKEOFF: struct.Struct("<Bff"),               # group, height, duration (legacy)
    LAND: struct.Struct("<Bff"),
    STOP: struct.Struct("<B"),                    # group
    GO_TO: struct.Struct("<BBfffff"),             # group, relative, x, y, z, yaw, duration (legacy)
    TAKEOFF_2: struct.Struct("<Bff?f"),           # group, height, yaw, use current yaw, duration
    LAND_2: struct.Struct("<Bff?f"),
    GO_TO_2: struct.Struct("<BBBfffff"),          # group, relative, linear, x, y, z, yaw, duration
}


def smooth_step(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s(tau) = 35 t^4 - 84 t^5 + 70 t^6 - 20 t^7 and its derivative: 0 to 1 with zero velocity, acceleration
    and jerk at both ends."""
    t = np.clip(tau, 0.0, 1.0)
    s = t**4 * (35.0 + t * (-84.0 + t * (70.0 - 20.0 * t)))
    ds = t**3 * (140.0 + t * (-420.0 + t * (420.0 - 140.0 * t)))
    return s, ds


class HighLevelCommander:
    """Planners of N drones (rows), writing to their commander."""

    def __init__(self, n: int, commander: Commander):
        self.commander = commander
        self.state = np.full(n, STOPPED)
        self.start = np.zeros((n, 3))
        self.end = np.zeros((n, 3))
        self.t0 = np.zeros(n)
        self.duration = np.ones(n)
        self.linear = np.zeros(n, dtype=bool)
        self.planned = np.zeros(n, dtype=bool)
        self.group_mask = np.zeros(n, dtype=np.int64)

    def disable(self, drone: int) -> None:
        """A higher-priority setpoint took over: forget the plan (commander.c does the same)."""
        self.state[drone] = DISABLED

    def reference(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity (N, 3) of every drone's plan at `now`."""
        tau = (now - self.t0) / self.duration
        s, ds = smooth_step(tau)
        s = np.where(self.linear, np.clip(tau, 0.0, 1.0), s)
        ds = np.where(self.linear, ((tau >= 0.0) & (tau < 1.0)).astype(float), ds)
        span = self.end - self.start
        return self.start + span * s[:, None], span * (ds / self.duration)[:, None]

    def finished(self, now: float) -> np.ndarray:
        return self.planned & (now >= self.t0 + self.duration)

    def bits(self, now: float) -> np.ndarray:
        """Bits 8-10 of supervisor.info: active (flying or landing), trajectory finished, disabled."""
        active = (self.state == FLYING) | (self.state == LANDING)
        return (np.where(active, 1 << 8, 0) | np.where(self.finished(now), 1 << 9, 0)
                | np.where(self.state == DISABLED, 1 << 10, 0))

    def update(self, now: float) -> None:
        """One tick: finished landings stop; every planner that is not disabled writes its setpoint."""
        self.state = np.where((self.state == LANDING) & self.finished(now), STOPPED, self.state)
        rows = (self.state != DISABLED) & self.commander.accepts(PRIORITY_HIGH_LEVEL)
        if rows.any():
            pos, vel = self.reference(now)
            self.commander.write_positions(rows, pos, vel, self.state == STOPPED, now)

    def command(self, drone: int, data: bytes, now: float, position: np.ndarray) -> None:
        """One port-8 packet for `drone`, whose estimated position is `position`."""
        if not data:
            raise MalformedPacket("empty high-level command")
        kind = data[0]
        fmt = FORMATS.get(kind)
        if fmt is None:
            raise MalformedPacket(f"high-level command {kind} is not modelled")
        if len(data) - 1 < fmt.size:
            raise MalformedPacket(f"high-level command {kind} of {len(data)} bytes, it needs {fmt.size + 1}")
        args = fmt.unpack_from(data, 1)
        if kind == SET_GROUP_MASK:
            self.group_mask[drone] = args[0]
            return
        group = args[0]
        if group != 0 and not group & self.group_mask[drone]:
            return
        if not all(math.isfinite(v) for v in args if isinstance(v, float)):
            raise MalformedPacket("high-level command with NaN or infinite values")
        flying = self.state[drone] in (FLYING, LANDING)
        current = self.reference(now)[0][drone] if flying else position
        if kind == STOP:
            self.state[drone] = STOPPED
        elif kind in (TAKEOFF, TAKEOFF_2, LAND, LAND_2):
            height, duration = args[1], args[-1]
            takeoff = kind in (TAKEOFF, TAKEOFF_2)
            if flying == takeoff or self.state[drone] == LANDING:
                return
            self._plan(drone, current, np.array([current[0], current[1], height]), duration, now, linear=False)
            self.state[drone] = FLYING if takeoff else LANDING
        else:
            relative, linear = args[1], (args[2] if kind == GO_TO_2 else 0)
            x, y, z, _yaw, duration = args[-5:]
            target = np.array([x, y, z]) + (current if relative else 0.0)
            self._plan(drone, current, target, duration, now, linear=bool(linear))
            self.state[drone] = FLYING

    def _plan(self, drone: int, start: np.ndarray, end: np.ndarray, duration: float, now: float, linear: bool
              ) -> None:
        self.start[drone] = start
        self.end[drone] = np.clip(end, -POSITION_LIMIT_M, POSITION_LIMIT_M)
        self.t0[drone] = now
        self.duration[drone] = max(float(duration), MIN_DURATION_S)
        self.linear[drone] = linear
        self.planned[drone] = True
