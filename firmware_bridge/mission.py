"""Missions (`missions/*.yaml`): what the swarm does, step by step, planned and sequenced without any drone.

A mission is a list of steps (take off, goals, pairwise goal swaps, formations, hold, land) and the rules
the flight follows (control mode, what to do when a link drops, safety limits). `plan_mission` turns it,
for one manifest, into phases with a goal for every drone, checked against the arena before anything
flies; `MissionSequencer` is the pure state machine that decides, from measured positions and the clock,
when a phase is done. The flight loop (`fly.py`) only carries its decisions out, so every rule here is
tested without a radio.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from nanoswarm.config import ConfigError, load_config, require
from nanoswarm.firmware_bridge.manifest import SwarmManifest
from nanoswarm.sim.arena import Arena
from nanoswarm.sim.config import FORMATIONS
from nanoswarm.sim.scenarios.base import formation_offsets

Mode = Literal["stock", "onboard", "laptop"]
Action = Literal["takeoff", "goals", "swap", "formation", "hold", "land"]
ARRIVALS = ("takeoff", "goals", "swap", "formation")   # phases that end when the drones arrive
# Which optional fields each action reads; any other field set on a step is a mistake worth reporting.
STEP_FIELDS: dict[str, tuple[str, ...]] = {
    "takeoff": ("height", "duration_s", "timeout_s"),
    "goals": ("goals", "timeout_s"),
    "swap": ("pairs", "timeout_s"),
    "formation": ("shape", "center", "spacing", "timeout_s"),
    "hold": ("duration_s",),
    "land": ("duration_s", "timeout_s"),
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "takeoff": ("height",), "goals": ("goals",), "swap": ("pairs",), "formation": ("shape", "center", "spacing"),
    "hold": ("duration_s",), "land": (),
}
DEFAULT_DURATION_S = {"takeoff": 2.5, "land": 3.0}
DEFAULT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class DroneGoal:
    id: int                                # the drone's id in the manifest
    at: tuple[float, float, float]         # m, world frame


@dataclass(frozen=True)
class MissionStep:
    """One step; `action` says which of the other fields it reads (STEP_FIELDS)."""

    action: Action
    height: float | None = None                       # takeoff: m above the floor
    duration_s: float | None = None                   # takeoff/land: commander time; hold: how long
    timeout_s: float | None = None                    # arrivals: longest wait before moving on
    goals: tuple[DroneGoal, ...] = ()                 # goals: drones not named keep their goal
    pairs: tuple[tuple[int, int], ...] = ()           # swap: ids exchanging their horizontal goals
    shape: str | None = None                          # formation: one of sim's FORMATIONS
    center: tuple[float, float, float] | None = None  # formation centre, m
    spacing: float | None = None                      # formation: m between neighbouring slots

    def validate(self) -> None:
        for name in ("height", "duration_s", "timeout_s", "goals", "pairs", "shape", "center", "spacing"):
            given = getattr(self, name) not in (None, ())
            require(not given or name in STEP_FIELDS[self.action], name,
                    f"is not used by action '{self.action}' (it reads {list(STEP_FIELDS[self.action])})")
            require(given or name not in REQUIRED_FIELDS[self.action], name,
                    f"action '{self.action}' needs it")
        for name in ("height", "duration_s", "timeout_s", "spacing"):
            value = getattr(self, name)
            require(value is None or value > 0, name, f"must be positive, got {value}")
        require(self.shape is None or self.shape in FORMATIONS, "shape",
                f"unknown formation '{self.shape}'; choose one of {list(FORMATIONS)}")
        for i, (a, b) in enumerate(self.pairs):
            require(a != b, f"pairs[{i}]", f"a drone cannot swap with itself ({a})")
        swapped = [i for pair in self.pairs for i in pair]
        require(len(swapped) == len(set(swapped)), "pairs", f"a drone appears in two pairs: {list(self.pairs)}")
        ids = [g.id for g in self.goals]
        require(len(ids) == len(set(ids)), "goals", f"a drone has two goals in one step: ids {ids}")

    @property
    def duration(self) -> float:
        return self.duration_s if self.duration_s is not None else DEFAULT_DURATION_S.get(self.action, 0.0)

    @property
    def timeout(self) -> float:
        return self.timeout_s if self.timeout_s is not None else DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class SafetyLimits:
    """Pre-flight refusals and in-flight landing triggers."""

    min_battery_v: float = 3.8         # pre-flight, resting on the floor
    land_battery_v: float = 3.2        # in flight: land that drone (the firmware's own low-voltage level)
    max_position_std: float = 0.05     # m, pre-flight: Kalman position standard deviation, each axis
    start_tolerance: float = 0.3       # m between a drone's measured and its manifest start
    geofence_margin: float = 0.1       # m inside the arena's walls and ceiling: crossing it lands everyone
    telemetry_timeout_s: float = 0.5   # no telemetry for this long: the link counts as lost
    preflight_timeout_s: float = 5.0   # to get telemetry from every drone and see the estimators converge

    def validate(self) -> None:
        require(0 < self.land_battery_v < self.min_battery_v, "land_battery_v",
                f"must be positive and below min_battery_v ({self.land_battery_v} V vs {self.min_battery_v} V)")
        for name in ("max_position_std", "start_tolerance", "telemetry_timeout_s", "preflight_timeout_s"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(self.geofence_margin >= 0, "geofence_margin", "must not be negative (m)")


@dataclass(frozen=True)
class LaptopSettings:
    """Laptop-in-the-loop: the policy flies a simulated twin of each drone, re-anchored to telemetry every
    cycle; the twin's state `horizon_s` ahead is streamed as a full-state setpoint (see laptop.py). A rollout
    costs about 5 ms per control step (10 ms) for a few drones on a laptop core, so fly this mode with a
    loop_hz of about 20."""

    horizon_s: float = 0.05            # how far the twin is rolled out per cycle
    params: str = "crazyflie21_sysid"  # the twin's airframe: the set the policy was trained with
    absent_distance: float = 4.0       # m: where a missing neighbour is observed (the app's absentDist)
    obstacle_sense_range: float = 0.5  # m: the obstacle grid reads this (no obstacles are known in flight)

    def validate(self) -> None:
        for name in ("horizon_s", "absent_distance", "obstacle_sense_range"):
            require(getattr(self, name) > 0, name, "must be positive")


@dataclass(frozen=True)
class Mission:
    name: str
    steps: tuple[MissionStep, ...]
    mode: Mode = "stock"
    on_link_loss: Literal["land_all", "continue"] = "land_all"
    goal_tolerance: float = 0.15       # m: a goal counts as reached within this distance
    max_speed: float = 0.5             # m/s: stock mode sizes its go-to durations from it
    command_hz: float = 10.0           # onboard: goal packets per drone and second (the app holds after 0.5 s)
    loop_hz: float = 50.0              # bridge loop: safety checks, sequencing, laptop policy, setpoints
    landed_height: float = 0.08        # m: below this a drone counts as on the floor
    safety: SafetyLimits = field(default_factory=SafetyLimits)
    laptop: LaptopSettings = field(default_factory=LaptopSettings)

    def validate(self) -> None:
        require(len(self.steps) >= 2, "steps", "needs at least a takeoff and a land")
        require(self.steps[0].action == "takeoff", "steps[0].action",
                f"a mission starts with 'takeoff', got '{self.steps[0].action}'")
        last = len(self.steps) - 1
        require(self.steps[-1].action == "land", f"steps[{last}].action",
                f"a mission ends with 'land', got '{self.steps[-1].action}'")
        for i, step in enumerate(self.steps[1:-1], start=1):
            require(step.action not in ("takeoff", "land"), f"steps[{i}].action",
                    f"'{step.action}' may only be the first (takeoff) or last (land) step")
        for name in ("goal_tolerance", "max_speed", "landed_height"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(1 <= self.command_hz <= 100, "command_hz", f"must be within [1, 100] Hz, got {self.command_hz}")
        require(self.command_hz * 0.5 >= 2, "command_hz",
                "must put at least 2 packets into the app's 0.5 s command timeout (>= 4 Hz)")
        require(5 <= self.loop_hz <= 200, "loop_hz", f"must be within [5, 200] Hz, got {self.loop_hz}")


def load_mission(path: str) -> Mission:
    return load_config(Mission, path)


@dataclass(frozen=True)
class Phase:
    """A step planned for one swarm: the goal of every drone (N, 3), in manifest order."""

    step: int
    action: Action
    goals: np.ndarray
    duration_s: float
    timeout_s: float

    @property
    def label(self) -> str:
        return f"{self.step}:{self.action}"


def _in_flight_box(arena: Arena, point: np.ndarray) -> bool:
    low, high = (b.numpy() for b in arena.flight_box())
    return bool(np.all(point >= low - 1e-9) and np.all(point <= high + 1e-9))


def assign_slots(current: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Slots (N, 3) reordered so that drone i takes row i: greedily the closest remaining (drone, slot)
    pair first, which keeps paths short and mostly uncrossed (optimal for the small swarms flown here
    would cost N! or a Hungarian solver for little gain)."""
    n = len(current)
    dist = np.linalg.norm(current[:, None, :] - slots[None, :, :], axis=-1)
    out = np.empty_like(slots)
    for _ in range(n):
        i, j = np.unravel_index(np.argmin(dist), dist.shape)
        out[i] = slots[j]
        dist[i, :] = np.inf
        dist[:, j] = np.inf
    return out


def plan_mission(mission: Mission, manifest: SwarmManifest) -> list[Phase]:
    """The mission's phases for `manifest`'s drones, checked: ids exist, every goal lies in the arena's
    flight box, and no two drones share a goal (closer than the manifest's min_separation)."""
    try:
        return _plan(mission, manifest)
    except ConfigError as err:
        raise ConfigError(f"mission '{mission.name}' for swarm '{manifest.name}': {err}") from None


def _plan(mission: Mission, manifest: SwarmManifest) -> list[Phase]:
    arena = manifest.load_arena()
    index = {drone_id: i for i, drone_id in enumerate(manifest.ids)}
    goals = np.array([d.start for d in manifest.drones], dtype=np.float64)
    phases = []
    for s, step in enumerate(mission.steps):
        where = f"steps[{s}]"
        goals = goals.copy()
        if step.action == "takeoff":
            low, high = arena.flight_height
            require(low <= step.height <= high, f"{where}.height",
                    f"{step.height} m is outside arena '{arena.name}''s flight heights [{low}, {high}] m")
            goals[:, 2] = step.height
        elif step.action == "goals":
            for g, goal in enumerate(step.goals):
                require(goal.id in index, f"{where}.goals[{g}].id",
                        f"no drone {goal.id} in swarm '{manifest.name}' (ids {manifest.ids})")
                goals[index[goal.id]] = goal.at
        elif step.action == "swap":
            for p, pair in enumerate(step.pairs):
                for drone_id in pair:
                    require(drone_id in index, f"{where}.pairs[{p}]",
                            f"no drone {drone_id} in swarm '{manifest.name}' (ids {manifest.ids})")
                a, b = index[pair[0]], index[pair[1]]
                # Only the horizontal goals change hands: each drone keeps its altitude, so pairs flown on
                # different altitude layers cross without meeting even under the stock commander.
                goals[[a, b], :2] = goals[[b, a], :2]
        elif step.action == "formation":
            offsets = formation_offsets(step.shape, len(goals), torch.tensor([float(step.spacing)]))[0]
            goals = assign_slots(goals, offsets.double().numpy() + np.asarray(step.center))
        elif step.action == "land":
            goals[:, 2] = 0.0
        if step.action in ("goals", "swap", "formation"):
            for i, goal in enumerate(goals):
                require(_in_flight_box(arena, goal), f"{where}",
                        f"puts drone {manifest.ids[i]} at {np.round(goal, 3).tolist()}, outside arena "
                        f"'{arena.name}''s flight box (walls {arena.wall_margin} m away, heights "
                        f"{list(arena.flight_height)} m)")
            for i, j in itertools.combinations(range(len(goals)), 2):
                gap = float(np.linalg.norm(goals[i] - goals[j]))
                require(gap >= manifest.min_separation, where,
                        f"gives drones {manifest.ids[i]} and {manifest.ids[j]} goals {gap:.2f} m apart; keep them "
                        f"at least min_separation = {manifest.min_separation} m apart")
        phases.append(Phase(step=s, action=step.action, goals=goals, duration_s=step.duration,
                            timeout_s=step.timeout))
    return phases


@dataclass(frozen=True)
class Transition:
    """What `MissionSequencer.update` decided: a phase ended (and how), and which phase follows (None: done)."""

    ended: Phase
    current: Phase | None
    reached: np.ndarray          # (N,) bool: active drones within the goal tolerance when it ended
    timed_out: bool


class MissionSequencer:
    """The mission as a state machine over measured positions and time; knows nothing of radios.

    Arrival phases end when every active drone is within `tolerance` of its goal (takeoff and land also
    wait out their commander duration), or at their timeout, which is reported and flown on from.
    Drones marked inactive (lost, or landed on their own) no longer hold a phase up.
    """

    def __init__(self, phases: list[Phase], tolerance: float, landed_height: float):
        self.phases = list(phases)
        self.tolerance = tolerance
        self.landed_height = landed_height
        self.position = 0
        self.started_at = 0.0
        self.results: list[tuple[Phase, np.ndarray, np.ndarray]] = []   # (phase, active, reached) per arrival
        self.finished = False

    @property
    def phase(self) -> Phase:
        return self.phases[self.position]

    def start(self, now: float) -> Phase:
        self.started_at = now
        return self.phase

    def _arrived(self, phase: Phase, positions: np.ndarray) -> np.ndarray:
        if phase.action == "land":
            return positions[:, 2] < self.landed_height
        return np.linalg.norm(positions - phase.goals, axis=1) <= self.tolerance

    def update(self, now: float, positions: np.ndarray, active: np.ndarray) -> Transition | None:
        """Advance if the current phase is done; `positions` (N, 3) may hold NaN rows for unseen drones."""
        if self.finished:
            return None
        phase = self.phase
        elapsed = now - self.started_at
        arrived = self._arrived(phase, positions) & active
        if phase.action == "hold":
            done, timed_out = elapsed >= phase.duration_s, False
        else:
            wait = phase.duration_s if phase.action in ("takeoff", "land") else 0.0
            all_there = bool(np.all(arrived[active]))
            timed_out = not all_there and elapsed >= wait + phase.timeout_s
            done = (elapsed >= wait and all_there) or timed_out
        if not done:
            return None
        if phase.action in ARRIVALS:
            self.results.append((phase, active.copy(), arrived.copy()))
        self.position += 1
        self.started_at = now
        self.finished = self.position >= len(self.phases)
        return Transition(ended=phase, current=None if self.finished else self.phase, reached=arrived,
                          timed_out=timed_out)

    def land_now(self, now: float, positions: np.ndarray, step: int) -> Phase:
        """Abandon the plan: land every drone where it is (rows of unseen drones land at their last goal)."""
        goals = np.where(np.isnan(positions), self.phase.goals, positions)
        goals[:, 2] = 0.0
        landing = self.phases[-1]
        phase = Phase(step=step, action="land", goals=goals, duration_s=landing.duration_s,
                      timeout_s=landing.timeout_s)
        self.phases = self.phases[:self.position] + [phase]
        self.started_at = now
        self.finished = False
        return phase

    def goals_reached(self) -> tuple[int, int]:
        """(reached, asked) over all arrival phases but the takeoff: drone-goals met within the tolerance."""
        reached = asked = 0
        for phase, active, arrived in self.results:
            if phase.action != "takeoff":
                reached += int(np.sum(arrived & active))
                asked += int(np.sum(active))
        return reached, asked


# A commander go-to follows a 7th-order polynomial whose peak speed is 35/16 of its mean.
GO_TO_PEAK_OVER_MEAN = 35.0 / 16.0


def travel_time(start: np.ndarray, goal: np.ndarray, max_speed: float, least_s: float = 1.0) -> float:
    """Seconds for a straight commander go-to from `start` to `goal` that never exceeds `max_speed`."""
    return max(least_s, GO_TO_PEAK_OVER_MEAN * float(np.linalg.norm(goal - start)) / max_speed)
