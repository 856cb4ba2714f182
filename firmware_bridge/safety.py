"""Safety rules as pure functions over telemetry snapshots: the pre-flight refusal and the in-flight alerts.

Nothing here talks to a drone, so every rule is tested on made-up snapshots; `fly.py` acts on the answers:
- pre-flight: every failed check is listed (all of them, not the first), and nothing takes off;
- in flight: a lost link (cflib's `connection_lost`, or no telemetry for `telemetry_timeout_s`) lands that
  drone and the rest follow the mission's `on_link_loss`; a low battery lands that drone; a geofence
  breach (the arena's room shrunk by `geofence_margin`) lands every drone, because a drone outside the fence
  has lost either its position or its control, and may cross the others' paths.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nanoswarm.firmware_bridge.manifest import DroneSpec, inside_room
from nanoswarm.firmware_bridge.mission import Mode, SafetyLimits
from nanoswarm.firmware_bridge.telemetry import (ATTITUDE_VARS, PM_STATES, RATE_VARS, STATE_VARS, Snapshot)
from nanoswarm.sim.arena import Arena

LOW_POWER_STATES = (3, 4)       # pm.state low power, shutdown
CHARGER_STATES = (1, 2)         # pm.state charging, charged: still on the charger
REQUIRED_LOGS = (*STATE_VARS, "pm.vbat", "pm.state", "supervisor.info", "kalman.varX", "kalman.varY",
                 "kalman.varZ")
MODE_LOGS: dict[str, tuple[str, ...]] = {"stock": (), "onboard": ("nanoswarm.mode",),
                                        "laptop": (*ATTITUDE_VARS, *RATE_VARS)}


@dataclass(frozen=True)
class Alert:
    kind: Literal["link_lost", "battery", "geofence"]
    drone: int          # index in the manifest
    message: str


def _name(spec: DroneSpec, uri: str) -> str:
    return f"drone {spec.id} ({uri})"


def preflight_problems(snapshots: list[Snapshot], specs: list[DroneSpec], uris: list[str],
                       missing_logs: list[list[str]], arena: Arena, limits: SafetyLimits, mode: Mode,
                       min_separation: float) -> list[str]:
    """Every reason not to take off, one line each naming the drone and what to do; empty when all is well."""
    problems: list[str] = []
    for snap, spec, uri, missing in zip(snapshots, specs, uris, missing_logs):
        who = _name(spec, uri)
        absent = [n for n in (*REQUIRED_LOGS, *MODE_LOGS[mode]) if n in missing]
        if absent:
            hint = (" (flash the nanoswarm app: export/crazyflie_app/README.md)" if "nanoswarm.mode" in absent
                    else " (use the Kalman estimator: stabilizer.estimator = 2)" if any("kalman" in n for n in absent)
                    else "")
            problems.append(f"{who}: its firmware does not log {absent}{hint}")
        if snap.samples == 0 or math.isnan(snap.vbat):
            problems.append(f"{who}: no telemetry yet; check its link")
            continue
        if snap.vbat < limits.min_battery_v:
            problems.append(f"{who}: battery at {snap.vbat:.2f} V, below min_battery_v = {limits.min_battery_v} V; "
                            "charge or swap it")
        if snap.pm_state in CHARGER_STATES + LOW_POWER_STATES:
            problems.append(f"{who}: power state '{PM_STATES[snap.pm_state]}'"
                            + ("; unplug the charger" if snap.pm_state in CHARGER_STATES else "; swap the battery"))
        if not snap.position_std <= limits.max_position_std:
            problems.append(f"{who}: position estimate not converged (standard deviation {snap.position_std:.3f} m "
                            f"> max_position_std = {limits.max_position_std} m); check the positioning system "
                            "and reset the estimator")
        flags = [name for name in ("tumbled", "locked", "crashed", "flying") if snap.supervisor_flag(name)]
        if flags:
            problems.append(f"{who}: supervisor reports {flags}; set it upright, and reboot it after an "
                            "emergency stop (locked)")
        elif snap.supervisor >= 0 and not snap.supervisor_flag("can_fly"):
            problems.append(f"{who}: supervisor says it cannot fly (not armed, or on the charger); arm it "
                            "(brushless: cflib supervisor.send_arming_request) or unplug the charger")
        if not np.all(np.isfinite(snap.pos)):
            continue
        if not inside_room(arena, snap.pos):
            problems.append(f"{who}: at {np.round(snap.pos, 2).tolist()}, outside arena '{arena.name}'")
        off = float(np.linalg.norm(snap.pos - np.asarray(spec.start)))
        if off > limits.start_tolerance:
            problems.append(f"{who}: at {np.round(snap.pos, 2).tolist()}, {off:.2f} m from its manifest start "
                            f"{list(spec.start)} (start_tolerance {limits.start_tolerance} m): drones swapped, "
                            "a wrong URI, or the positioning system's origin moved")
    for (a, sa, ua), (b, sb, ub) in itertools.combinations(zip(snapshots, specs, uris), 2):
        gap = float(np.linalg.norm(a.pos - b.pos))
        if gap < min_separation:
            problems.append(f"{_name(sa, ua)} and {_name(sb, ub)}: {gap:.2f} m apart, closer than min_separation "
                            f"= {min_separation} m; move them apart")
    return problems


def flight_alerts(snapshots: list[Snapshot], lost_reasons: list[str | None], watched: list[bool], now: float,
                  arena: Arena, limits: SafetyLimits) -> list[Alert]:
    """What needs a reaction now, for the drones in `watched` (those still flown by the mission)."""
    alerts = []
    for index, (snap, lost, watch) in enumerate(zip(snapshots, lost_reasons, watched)):
        if not watch:
            continue
        if lost is not None or snap.age(now) > limits.telemetry_timeout_s:
            why = lost or f"no telemetry for {snap.age(now):.2f} s (telemetry_timeout_s {limits.telemetry_timeout_s})"
            alerts.append(Alert("link_lost", index, why))
            continue
        if snap.vbat < limits.land_battery_v or snap.pm_state in LOW_POWER_STATES:
            alerts.append(Alert("battery", index, f"battery at {snap.vbat:.2f} V (land_battery_v "
                                                  f"{limits.land_battery_v} V), power state '"
                                                  f"{PM_STATES.get(snap.pm_state, snap.pm_state)}'"))
        if not inside_room(arena, snap.pos, limits.geofence_margin):
            alerts.append(Alert("geofence", index, f"at {np.round(snap.pos, 2).tolist()}, beyond the geofence "
                                                   f"({limits.geofence_margin} m inside arena '{arena.name}')"))
    return alerts
