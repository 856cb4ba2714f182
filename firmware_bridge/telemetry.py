"""Telemetry: cflib log blocks of each drone, turned into the latest `Snapshot` in SI units.

Log variables use the firmware's names, so the same blocks read a real Crazyflie and the virtual one.
A block carries at most 26 bytes and runs at most at 100 Hz (crtp.md section 3), hence five blocks:
- state, at the manifest's telemetry rate: position and velocity (6 floats, 24 B);
- status, at 10 Hz: battery voltage and state, the supervisor's bitfield, the Kalman filter's position
  variances and, where the nanoswarm app is flashed, its mode (20 B);
- motors, at 10 Hz: the four motor commands (16 B), for the flight's report only (nothing reads them live):
  one packet per drone every 0.1 s is what it costs in air time;
- attitude and rates, laptop-in-the-loop only: the quaternion (16 B) and the gyro (12 B).
Variables a firmware lacks are left out of their block and reported by `missing`; pre-flight decides
which absences matter.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from cflib.crazyflie.log import LogConfig

from nanoswarm.firmware_bridge.links import DroneLink

STATE_VARS = ("stateEstimate.x", "stateEstimate.y", "stateEstimate.z",
              "stateEstimate.vx", "stateEstimate.vy", "stateEstimate.vz")
STATUS_VARS = ("pm.vbat", "pm.state", "supervisor.info", "kalman.varX", "kalman.varY", "kalman.varZ",
               "nanoswarm.mode")
MOTOR_VARS = ("motor.m1", "motor.m2", "motor.m3", "motor.m4")   # 0..65535 each (firmware motors.h)
ATTITUDE_VARS = ("stateEstimate.qw", "stateEstimate.qx", "stateEstimate.qy", "stateEstimate.qz")
RATE_VARS = ("gyro.x", "gyro.y", "gyro.z")
STATUS_HZ = 10.0
RAD_PER_DEG = math.pi / 180.0

# Supervisor bitfield (supervisor.info, firmware supervisor.c), bit positions.
SUPERVISOR_BITS = {"can_be_armed": 0, "armed": 1, "auto_armed": 2, "can_fly": 3, "flying": 4, "tumbled": 5,
                   "locked": 6, "crashed": 7}
# pm.state values (firmware pm.h).
PM_STATES = {0: "battery", 1: "charging", 2: "charged", 3: "low power", 4: "shutdown"}
APP_MODES = {0: "IDLE", 1: "POLICY", 2: "HOLD", 3: "LAND", 4: "LANDED"}   # nanoswarm.mode, nsw_app.h

Sink = Callable[[int, str, float, dict[str, float]], None]   # drone id, block, host time, values


@dataclass(frozen=True)
class Snapshot:
    """The latest telemetry of one drone. Times are the host's monotonic clock (s); a value never
    received is NaN (floats) or -1 (codes)."""

    received: float = -math.inf          # last state sample
    pos: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    vel: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    quat: np.ndarray = field(default_factory=lambda: np.full(4, np.nan))    # (w, x, y, z), body to world
    omega: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))   # rad/s, body frame
    status_received: float = -math.inf
    vbat: float = math.nan               # V
    pm_state: int = -1
    supervisor: int = -1
    position_std: float = math.nan       # m, largest axis of the Kalman filter's position
    app_mode: int = -1
    link_quality: float = math.nan       # %, radio links only
    samples: int = 0                     # state samples so far

    def age(self, now: float) -> float:
        return now - self.received

    def supervisor_flag(self, name: str) -> bool:
        return self.supervisor >= 0 and bool(self.supervisor >> SUPERVISOR_BITS[name] & 1)


class DroneTelemetry:
    """Log blocks of one drone; cflib's receive thread writes, anyone reads `snapshot()`."""

    def __init__(self, link: DroneLink, telemetry_hz: float, attitude: bool, sink: Sink | None = None):
        self.link = link
        self._lock = threading.Lock()
        self._snap = Snapshot()
        self._sink = sink
        wanted = [("state", STATE_VARS, telemetry_hz), ("status", STATUS_VARS, STATUS_HZ),
                  ("motors", MOTOR_VARS, STATUS_HZ)]
        if attitude:
            wanted += [("attitude", ATTITUDE_VARS, telemetry_hz), ("rates", RATE_VARS, telemetry_hz)]
        self.missing = [name for _, names, _ in wanted for name in names if not link.has_log(name)]
        self.errors: list[str] = []
        self._blocks = []
        for block, names, hz in wanted:
            present = [n for n in names if n not in self.missing]
            if not present:
                continue
            config = LogConfig(name=block, period_in_ms=max(10, int(round(1000.0 / hz / 10.0)) * 10))
            for name in present:
                config.add_variable(name)   # the TOC's own type
            config.data_received_cb.add_callback(self._on_data)
            config.error_cb.add_callback(lambda conf, message: self.errors.append(f"{conf.name}: {message}"))
            self._blocks.append(config)
        link.cf.link_statistics.link_quality_updated.add_callback(self._on_link_quality)

    def start(self) -> None:
        for config in self._blocks:
            self.link.cf.log.add_config(config)
            config.start()

    def stop(self) -> None:
        for config in self._blocks:
            if self.link.cf.link is not None:
                config.stop()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snap

    def _on_link_quality(self, quality: float) -> None:
        with self._lock:
            self._snap = dataclasses.replace(self._snap, link_quality=float(quality))

    def _on_data(self, _timestamp: int, data: dict[str, float], config: LogConfig) -> None:
        now = time.monotonic()
        with self._lock:
            self._snap = _merge(self._snap, config.name, data, now)
        if self._sink is not None:
            self._sink(self.link.spec.id, config.name, now, data)


def _merge(snap: Snapshot, block: str, data: dict[str, float], now: float) -> Snapshot:
    """The snapshot updated with one log packet, converted to SI units."""
    def vector(names: tuple[str, ...], scale: float = 1.0) -> np.ndarray:
        return np.array([data.get(n, math.nan) for n in names], dtype=np.float64) * scale

    if block == "state":
        return dataclasses.replace(snap, received=now, pos=vector(STATE_VARS[:3]), vel=vector(STATE_VARS[3:]),
                        samples=snap.samples + 1)
    if block == "attitude":
        return dataclasses.replace(snap, quat=vector(ATTITUDE_VARS))
    if block == "rates":
        return dataclasses.replace(snap, omega=vector(RATE_VARS, RAD_PER_DEG))
    if block == "motors":
        return snap   # logged for the report, not part of the live snapshot
    variances = [data[n] for n in ("kalman.varX", "kalman.varY", "kalman.varZ") if n in data]
    return dataclasses.replace(snap, status_received=now, vbat=float(data.get("pm.vbat", math.nan)),
                    pm_state=int(data.get("pm.state", -1)), supervisor=int(data.get("supervisor.info", -1)),
                    position_std=math.sqrt(max(max(variances), 0.0)) if variances else math.nan,
                    app_mode=int(data.get("nanoswarm.mode", -1)))
