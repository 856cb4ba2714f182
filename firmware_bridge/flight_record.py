"""A logged flight (flight_log.py) as a `SwarmRecord`, for its report and its video, from the folder alone:

- positions: each drone's state packets arrive at their own times, so they are resampled onto one clock at
  the manifest's telemetry rate (linear interpolation; NaN before a drone's first and after its last sample);
- goals: the mission as planned for the manifest (both are saved in the folder), each phase's goals from the
  moment its `begins` event was logged; a landing's goal is the floor below where the drone was when it began
  (every mode lands in place with the commander's land, and a swarm-wide `land_all` does the same);
- motor commands (motors block) and attitude (attitude block, laptop mode only) where they were logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanoswarm.firmware_bridge.flight_log import Event, Rows, block_samples, read_events, read_telemetry
from nanoswarm.firmware_bridge.manifest import load_manifest
from nanoswarm.firmware_bridge.mission import Phase, load_mission, plan_mission
from nanoswarm.firmware_bridge.telemetry import ATTITUDE_VARS, MOTOR_VARS, STATE_VARS
from nanoswarm.sim.params import load_params
from nanoswarm.viz.errors import RenderError
from nanoswarm.viz.record import SwarmRecord
from nanoswarm.viz.report import write_report

FLIGHT_FILES = ("events.jsonl", "manifest.yaml", "mission.yaml")
MOTOR_FULL = 65535.0   # motor.mN at full command
PATHS = ("log_dir", "plot", "report")   # summary fields that name files, not measure the flight


@dataclass
class LoggedFlight:
    record: SwarmRecord
    summary: dict[str, Any]      # summary.json, or why there is none
    notes: list[str]             # what the log lacks, for the reader of the report


def _resample(grid: np.ndarray, t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values (n, k) sampled at t, at the times of `grid` (G,); NaN outside [t[0], t[-1]]."""
    if len(t) == 0:
        return np.full((len(grid), values.shape[1]), np.nan)
    out = np.stack([np.interp(grid, t, v) for v in values.T], axis=-1)
    out[(grid < t[0]) | (grid > t[-1])] = np.nan
    return out


Samples = list[tuple[np.ndarray, np.ndarray]]   # per drone: times (n,), values (n, k)


def _samples(telemetry: list[Rows], block: str, names: tuple[str, ...]) -> Samples:
    return [block_samples(rows, block, names) for rows in telemetry]


def _on_grid(grid: np.ndarray, samples: Samples) -> np.ndarray | None:
    """(G, M, k) every drone's samples at the grid's times, or None when no drone logged any."""
    if not any(len(t) for t, _ in samples):
        return None
    return np.stack([_resample(grid, t, v) for t, v in samples], axis=1)


def _goals(grid: np.ndarray, pos: np.ndarray, phases: list[Phase], events: list[Event]) -> np.ndarray:
    """(G, M, 3) each drone's goal over time, NaN before the first phase began."""
    goals = np.full_like(pos, np.nan)
    for event in events:
        if event.kind != "phase" or not event.message.endswith(" begins"):
            continue
        phase = phases[int(event.message.split(":", 1)[0])]
        k = min(int(np.searchsorted(grid, event.t)), len(grid) - 1)
        at = phase.goals
        if phase.action == "land":
            at = np.where(np.isnan(pos[k]), at, pos[k])
            at[:, 2] = 0.0
        goals[k:] = at
    return goals


def read_flight(folder: str | Path) -> LoggedFlight:
    """The flight logged in `folder` (written by `nanoswarm fly`), as a record with its summary."""
    folder = Path(folder)
    absent = [name for name in FLIGHT_FILES if not (folder / name).is_file()]
    if absent:
        raise RenderError(f"'{folder}' is not a complete flight log: it lacks {absent}; give a folder written by "
                          "`nanoswarm fly` (its --log)")
    manifest = load_manifest(str(folder / "manifest.yaml"))
    mission = load_mission(str(folder / "mission.yaml"))
    logged = read_telemetry(folder)
    telemetry = [logged.get(drone, []) for drone in manifest.ids]
    state = _samples(telemetry, "state", STATE_VARS[:3])
    seen = [t for t, _ in state if len(t)]
    if not seen:
        raise RenderError(f"'{folder}' holds no position telemetry (no state packets): the flight never started; "
                          "see its events.jsonl for why")
    grid = np.arange(min(t[0] for t in seen), max(t[-1] for t in seen) + 1e-9, 1.0 / manifest.telemetry_hz)
    pos = _on_grid(grid, state)
    motors = _on_grid(grid, _samples(telemetry, "motors", MOTOR_VARS))
    notes = []
    if motors is None:
        notes.append("Motor commands were not logged: this flight's telemetry has no motors block (motor.m1-m4). "
                     "Flights logged by this version of `nanoswarm fly` log them at 10 Hz wherever the firmware "
                     "has them.")
    # The collision radius is the airframe's the mission names for its policy twin (laptop.params): the
    # Crazyflie's parameter set, whichever mode flew.
    record = SwarmRecord(
        t=grid, pos=pos, goals=_goals(grid, pos, plan_mission(mission, manifest), read_events(folder)),
        collision_radius=load_params(mission.laptop.params).collision_radius,
        names=[str(i) for i in manifest.ids], quat=_on_grid(grid, _samples(telemetry, "attitude", ATTITUDE_VARS)),
        motors=None if motors is None else motors / MOTOR_FULL, room=manifest.load_arena().room,
        title=f"{manifest.name}: {mission.name} ({mission.mode})")
    summary_path = folder / "summary.json"
    summary = (json.loads(summary_path.read_text()) if summary_path.is_file()
               else {"summary": "none: the flight did not finish (no summary.json)"})
    return LoggedFlight(record=record, summary=summary, notes=notes)


def write_flight_report(folder: str | Path) -> Path:
    """`report.md` and its figures in the flight's folder, the event timeline (flight.png) included if drawn."""
    folder = Path(folder)
    flight = read_flight(folder)
    extra = [("Altitude and events", "flight.png")] if (folder / "flight.png").is_file() else []
    metrics = {k: v for k, v in flight.summary.items() if k not in PATHS}
    return write_report([flight.record], metrics, folder, f"Flight {flight.record.title}", notes=flight.notes,
                        extra=extra)
