"""Swarm manifests (`hardware/swarms/*.yaml`): which Crazyflies fly, where they start, and how to reach them.

A manifest is hardware data like an arena or a parameter set: it is checked on load, so a duplicated
address or a drone placed outside the room fails before any radio is opened, with the field named.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from nanoswarm.config import require
from nanoswarm.hardware import load_hardware
from nanoswarm.sim.arena import Arena, load_arena

URI_SCHEMES = ("radio", "udp", "usb", "tcp", "serial")
RADIO_URI = re.compile(r"radio://(?P<dongle>[^/]+)/(?P<channel>\d+)/(?P<rate>250K|1M|2M)/(?P<address>[0-9A-Fa-f]{10})"
                       r"(\?.*)?$")
FLOOR_SLACK = 0.1  # m: a position estimate of a drone standing on the floor may read this far below it
MOCAP_SYSTEMS = ("vicon", "optitrack", "optitrack_closed_source", "qualisys", "nokov", "vrpn", "motionanalysis")


@dataclass(frozen=True)
class DroneSpec:
    """One Crazyflie: its swarm id (the P2P id its app broadcasts), link URI and start on the floor (m)."""

    id: int
    uri: str
    start: tuple[float, float, float]
    rigid_body: str | None = None      # its name in the motion-capture system; default "cf<id>"

    def validate(self) -> None:
        require(0 <= self.id <= 255, "id", f"must be within 0..255 (one byte on the P2P link), got {self.id}")
        scheme = self.uri.split("://", 1)[0]
        require("://" in self.uri and scheme in URI_SCHEMES, "uri",
                f"'{self.uri}' is not a cflib URI; use one of {[s + '://...' for s in URI_SCHEMES]}, "
                "for example radio://0/80/2M/E7E7E7E701 or udp://127.0.0.1:19850")
        if scheme == "radio":
            match = RADIO_URI.match(self.uri)
            require(match is not None, "uri", f"'{self.uri}' is not radio://DONGLE/CHANNEL/250K|1M|2M/ADDRESS "
                                              "with a 10-digit hex address")
            require(int(match["channel"]) <= 125, "uri", f"channel {match['channel']} is above 125")
        require(all(math.isfinite(v) for v in self.start), "start", f"must be finite, got {list(self.start)}")

    @property
    def body_name(self) -> str:
        return self.rigid_body if self.rigid_body is not None else f"cf{self.id}"


@dataclass(frozen=True)
class MocapSpec:
    """A motion-capture system read through libmotioncapture (`pip install motioncapture`); each drone's
    rigid body position is streamed to it as an external position (cflib `send_extpos`)."""

    system: str
    hostname: str
    rate_hz: float = 50.0

    def validate(self) -> None:
        require(self.system in MOCAP_SYSTEMS, "system", f"unknown system '{self.system}'; choose one of "
                                                        f"{list(MOCAP_SYSTEMS)} (libmotioncapture's names)")
        require(0 < self.rate_hz <= 100, "rate_hz", f"must be within (0, 100] Hz, got {self.rate_hz}")


@dataclass(frozen=True)
class SwarmManifest:
    """The swarm: its drones, the arena it flies in, and how the laptop talks to it."""

    name: str
    arena: str                           # hardware/arenas name or YAML path
    drones: tuple[DroneSpec, ...]
    mocap: MocapSpec | None = None
    telemetry_hz: float = 20.0           # position/velocity log rate per drone (10..100 Hz)
    connect_timeout_s: float = 10.0      # per attempt: TOCs, parameter values and all
    connect_retries: int = 2             # further attempts after a failed one
    min_separation: float = 0.25         # m between start positions (checked again on the measured ones)

    def validate(self) -> None:
        require(len(self.drones) >= 1, "drones", "needs at least one drone")
        for field, values in (("id", [d.id for d in self.drones]), ("uri", [d.uri for d in self.drones])):
            seen: dict[object, int] = {}
            for i, value in enumerate(values):
                require(value not in seen, f"drones[{i}].{field}",
                        f"{value!r} is already used by drones[{seen.get(value)}]; every drone needs its own")
                seen[value] = i
        require(10 <= self.telemetry_hz <= 100, "telemetry_hz",
                f"must be within [10, 100] Hz (log periods are multiples of 10 ms), got {self.telemetry_hz}")
        require(self.connect_timeout_s > 0, "connect_timeout_s", "must be positive (s)")
        require(self.connect_retries >= 0, "connect_retries", "must not be negative")
        require(self.min_separation > 0, "min_separation", "must be positive (m)")
        arena = self.load_arena()
        for i, drone in enumerate(self.drones):
            require(inside_room(arena, drone.start), f"drones[{i}].start",
                    f"{list(drone.start)} is outside arena '{arena.name}' (room {list(arena.room)} m, centred on "
                    "x = y = 0, floor at z = 0)")
        for (i, a), (j, b) in itertools.combinations(enumerate(self.drones), 2):
            gap = math.dist(a.start, b.start)
            require(gap >= self.min_separation, f"drones[{j}].start",
                    f"is {gap:.2f} m from drones[{i}] (id {a.id}); starts must be at least min_separation = "
                    f"{self.min_separation} m apart")

    def load_arena(self) -> Arena:
        return load_arena(self.arena)

    @property
    def ids(self) -> list[int]:
        return [d.id for d in self.drones]


def inside_room(arena: Arena, point: tuple[float, float, float] | list[float], margin: float = 0.0) -> bool:
    """Whether `point` lies in the arena's room shrunk by `margin` on every side but the floor."""
    hx, hy, top = 0.5 * arena.room[0] - margin, 0.5 * arena.room[1] - margin, arena.room[2] - margin
    x, y, z = point
    return abs(x) <= hx and abs(y) <= hy and -FLOOR_SLACK <= z <= top


def radio_dongles(manifest: SwarmManifest) -> dict[str, list[int]]:
    """Drone ids per Crazyradio (radio URIs only): the radio, not the laptop, is the swarm's bottleneck."""
    dongles: dict[str, list[int]] = {}
    for drone in manifest.drones:
        match = RADIO_URI.match(drone.uri)
        if match:
            dongles.setdefault(match["dongle"], []).append(drone.id)
    return dongles


def load_manifest(name_or_path: str) -> SwarmManifest:
    """A manifest from hardware/swarms/ by name, or from a YAML path."""
    return load_hardware(SwarmManifest, "swarms", name_or_path, "swarm")
