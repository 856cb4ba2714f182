"""The three ways a mission's phases reach the drones; the flight loop calls the same four methods on each.

- **stock**: the firmware's high-level commander flies everything (takeoff, straight go-tos sized by the
  mission's max_speed, land). Nothing is streamed, so a drone whose link drops keeps hovering at its last
  goal: the commander has no link watchdog. No collision avoidance: plan crossing paths on separate
  altitude layers (a `swap` keeps each drone's altitude for this reason).
- **onboard**: the commander takes off; then the policy flies onboard (nanoswarm app): each drone gets its
  goal as an app-channel packet (`command_packet(goal, COMMAND_FLY)`) streamed at `command_hz`, because
  the app holds its position when packets stop for 0.5 s; landing is the app's own (`COMMAND_LAND`),
  which it keeps doing without further packets.
- **laptop**: the commander takes off; then the policy flies simulated twins on the laptop (laptop.py),
  whose short-horizon states are streamed as full-state setpoints every cycle; landing hands the drone
  back to the commander (`send_notify_setpoint_stop`, then land), whose priority streamed setpoints
  otherwise override.

A commander command is one packet, and a lost one would leave a drone behind (UDP has no resends; a radio
resends only a few times), so each is sent `COMMAND_REPEATS` times `COMMAND_REPEAT_S` apart. Repeats are
harmless: the commander refuses a take-off while it flies and a landing while it lands, and a repeated
go-to re-plans smoothly from the current state to the same goal. A newer command to a drone cancels the
repeats of its older one. Every send goes through the drone's `LinkSender`, never from the loop's thread.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from cflib.crazyflie import Crazyflie

from nanoswarm.export.crazyflie_app import COMMAND_DISABLE, COMMAND_FLY, COMMAND_LAND, command_packet
from nanoswarm.firmware_bridge.laptop import LaptopPolicy
from nanoswarm.firmware_bridge.links import DroneLink, Pacer
from nanoswarm.firmware_bridge.mission import Mission, Phase, travel_time
from nanoswarm.firmware_bridge.telemetry import Snapshot

OOT_CONTROLLER = 6      # stabilizer.controller: out of tree, the nanoswarm app (crazyflie.md section 3)
POLICY_PHASES = ("goals", "swap", "formation", "hold")
COMMAND_REPEATS = 3
COMMAND_REPEAT_S = 0.2

Send = Callable[[Crazyflie], None]


class Pilot:
    """Common to all modes: commander take-off, landing and stop, and the repeats of commander commands."""

    def __init__(self, links: list[DroneLink], mission: Mission):
        self.links = links
        self.mission = mission
        self._repeats: dict[int, list[tuple[float, Send]]] = {}

    def command(self, now: float, i: int, send: Send) -> None:
        """Send a commander command to drone `i` now and repeat it; replaces its pending repeats."""
        self.links[i].sender.post(lambda: send(self.links[i].cf))
        self._repeats[i] = [(now + k * COMMAND_REPEAT_S, send) for k in range(1, COMMAND_REPEATS)]

    def prepare(self) -> list[str]:
        """Settings written before take-off; returns what was set, for the flight's events."""
        return []

    def begin_phase(self, now: float, phase: Phase, flying: list[int], snaps: list[Snapshot]) -> None:
        if phase.action == "takeoff":
            for i in flying:
                self.command(now, i, lambda cf, h=float(phase.goals[i, 2]), d=phase.duration_s:
                             cf.high_level_commander.takeoff(h, d))

    def tick(self, now: float, phase: Phase, flying: list[int], snaps: list[Snapshot]) -> None:
        """Called every loop cycle: due repeats, and whatever the mode streams."""
        for i, pending in self._repeats.items():
            while pending and pending[0][0] <= now:
                send = pending.pop(0)[1]
                self.links[i].sender.post(lambda i=i, send=send: send(self.links[i].cf))

    def land_one(self, now: float, i: int, snap: Snapshot) -> None:
        """Land drone `i` where it is, on its own (low battery, lost link, or the mission's end)."""
        self.command(now, i, lambda cf, d=self.mission.steps[-1].duration: cf.high_level_commander.land(0.0, d))

    def finish(self) -> None:
        """After landing: motors off and the drones handed back idle (twice: no repeats come after this)."""
        self._repeats.clear()
        for link in self.links:
            for _ in range(2):
                link.sender.post(lambda cf=link.cf: (cf.commander.send_stop_setpoint(), cf.high_level_commander.stop()))


class StockPilot(Pilot):
    def begin_phase(self, now: float, phase: Phase, flying: list[int], snaps: list[Snapshot]) -> None:
        super().begin_phase(now, phase, flying, snaps)
        if phase.action in ("goals", "swap", "formation"):
            for i in flying:
                start = snaps[i].pos if np.all(np.isfinite(snaps[i].pos)) else phase.goals[i]
                self.command(now, i, lambda cf, g=[float(v) for v in phase.goals[i]],
                             d=travel_time(start, phase.goals[i], self.mission.max_speed):
                             cf.high_level_commander.go_to(*g, 0.0, d))
        elif phase.action == "land":
            for i in flying:
                self.land_one(now, i, snaps[i])


class OnboardPilot(Pilot):
    def __init__(self, links: list[DroneLink], mission: Mission):
        super().__init__(links, mission)
        self.commands: dict[int, tuple[np.ndarray, int]] = {}     # drone -> (goal, COMMAND_*) being streamed
        self.pacer = Pacer(mission.command_hz, mission.loop_hz)

    def prepare(self) -> list[str]:
        done = []
        for link in self.links:
            for name, value in (("stabilizer.controller", OOT_CONTROLLER), ("nanoswarm.id", link.spec.id)):
                if link.has_param(name):
                    link.set_param(name, value)
                    done.append(f"drone {link.spec.id}: {name} = {value}")
        return done

    def begin_phase(self, now: float, phase: Phase, flying: list[int], snaps: list[Snapshot]) -> None:
        super().begin_phase(now, phase, flying, snaps)
        if phase.action in POLICY_PHASES:
            self.commands.update({i: (phase.goals[i], COMMAND_FLY) for i in flying})
        elif phase.action == "land":
            for i in flying:
                self.land_one(now, i, snaps[i])
        self.pacer.reset()

    def land_one(self, now: float, i: int, snap: Snapshot) -> None:
        if i not in self.commands:        # still under the commander (take-off): the commander lands it
            super().land_one(now, i, snap)
            return
        self.commands[i] = (np.nan_to_num(self.commands[i][0]), COMMAND_LAND)
        self.pacer.reset()

    def tick(self, now: float, phase: Phase, flying: list[int], snaps: list[Snapshot]) -> None:
        super().tick(now, phase, flying, snaps)
        if not self.pacer.due(now):
            return
        for i, (goal, command) in self.commands.items():
            packet = command_packet(goal, command)
            self.links[i].sender.stream("app", lambda cf=self.links[i].cf, p=packet: cf.appchannel.send_packet(p))

    def finish(self) -> None:
        self.commands.clear()
        super().finish()
        for link in self.links:
            packet = command_packet(np.zeros(3), COMMAND_DISABLE)
            link.sender.post(lambda cf=link.cf, p=packet: cf.appchannel.send_packet(p))


class LaptopPilot(Pilot):
    def __init__(self, links: list[DroneLink], mission: Mission, policy: LaptopPolicy):
        super().__init__(links, mission)
        self.policy = policy
        self.goals: dict[int, np.ndarray] = {}     # drones streamed from the twins, and their goals
        self.rollout_s: list[float] = []

    def begin_phase(self, now: float, phase: Phase, flying: list[int], snaps: list[Snapshot]) -> None:
        super().begin_phase(now, phase, flying, snaps)
        if phase.action in POLICY_PHASES:
            self.goals.update({i: phase.goals[i] for i in flying})
        elif phase.action == "land":
            for i in flying:
                self.land_one(now, i, snaps[i])

    def land_one(self, now: float, i: int, snap: Snapshot) -> None:
        self.goals.pop(i, None)
        self.command(now, i, lambda cf, d=self.mission.steps[-1].duration: (
            cf.commander.send_notify_setpoint_stop(), cf.high_level_commander.land(0.0, d)))

    def tick(self, now: float, phase: Phase, flying: list[int], snaps: list[Snapshot]) -> None:
        super().tick(now, phase, flying, snaps)
        rows = [i for i in sorted(self.goals) if _attitude_known(snaps[i])]
        if not rows:
            return
        started = time.perf_counter()
        twin = self.policy.rollout(np.array(rows), np.stack([snaps[i].pos for i in rows]),
                                   np.stack([snaps[i].vel for i in rows]), np.stack([snaps[i].quat for i in rows]),
                                   np.stack([snaps[i].omega for i in rows]), np.stack([self.goals[i] for i in rows]),
                                   carry_s=1.0 / self.mission.loop_hz)
        self.rollout_s.append(time.perf_counter() - started)
        for k, i in enumerate(rows):
            w, x, y, z = (float(v) for v in twin.quat[k])
            pos, vel, acc = twin.pos[k].tolist(), twin.vel[k].tolist(), twin.acc[k].tolist()
            rates = [float(v) for v in twin.omega[k]]   # rad/s: the firmware reads cflib's x1000 as mrad/s
            self.links[i].sender.stream("setpoint", lambda cf=self.links[i].cf, p=pos, v=vel, a=acc, q=(x, y, z, w),
                                        r=rates: cf.commander.send_full_state_setpoint(p, v, a, q, *r))


def _attitude_known(snap: Snapshot) -> bool:
    return bool(np.all(np.isfinite(snap.quat)) and np.all(np.isfinite(snap.omega)) and np.all(np.isfinite(snap.pos)))


def make_pilot(links: list[DroneLink], mission: Mission, laptop_policy: LaptopPolicy | None) -> Pilot:
    """The pilot of the mission's mode; laptop mode flies `laptop_policy` (loaded before connecting)."""
    if mission.mode == "stock":
        return StockPilot(links, mission)
    if mission.mode == "onboard":
        return OnboardPilot(links, mission)
    if laptop_policy is None:
        raise ValueError("laptop mode needs the LaptopPolicy it flies")
    return LaptopPilot(links, mission, laptop_policy)
