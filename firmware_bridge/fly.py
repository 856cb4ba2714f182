"""`nanoswarm fly`: fly a manifest's swarm through a mission from the laptop, or rehearse it on a virtual swarm.

    nanoswarm fly --swarm hardware/swarms/cf8_lab.yaml --mission missions/goal_swap.yaml [--dry-run]

One flight, in order: load and plan (bad manifests and missions fail here, with the field named) →
connect every drone in parallel (deadlines, retries, shared TOC cache; links.py) → start telemetry
(telemetry.py) → write the mode's parameters → pre-flight checks, which refuse to take off with every
reason listed (safety.py) → the mission loop at `loop_hz` → landing → summary, log folder, plot and report.

The loop, each cycle: read the latest snapshot of every drone; apply the safety rules (a lost link lands
that drone and the others follow `on_link_loss`; low battery lands that drone; a geofence breach lands
all); let the pure `MissionSequencer` decide whether the phase is done; let the mode's pilot stream what it
streams (pilots.py); forward motion-capture positions; update the live table. Ctrl-C, any key, or the
caller's `stop` event is an emergency stop: motors off on every drone, all links in parallel.

Radio limits (crtp.md section 7): one Crazyradio serialises all of its links, and cflib spends about 1 ms
of USB per packet. Published experience is about 3-4 Crazyflies per radio with streamed setpoints (laptop
mode streams full-state setpoints every cycle), about 15 per radio when the drones fly onboard and the host
sends little (onboard mode streams a 14-byte goal packet at `command_hz`, 10 Hz by default, plus
telemetry). The telemetry rate in the manifest costs air time too: 8 drones at 20 Hz of state plus 10 Hz each of
status and motor commands is 320 packets/s. Spread the drones over several radios (radio://0/..., radio://1/...) for
streaming modes; the bridge warns when a radio carries more than 4 drones in laptop mode. A virtual swarm
over UDP has none of these limits, so a rehearsal says the bridge works, not that the radio will keep up.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from nanoswarm.config import from_mapping, to_mapping
from nanoswarm.firmware_bridge.errors import PolicyError, PreflightError
from nanoswarm.firmware_bridge.flight_log import FlightLog
from nanoswarm.firmware_bridge.flight_record import write_flight_report
from nanoswarm.firmware_bridge.keys import KeyWatcher
from nanoswarm.firmware_bridge.laptop import LaptopPolicy
from nanoswarm.firmware_bridge.links import (DEFAULT_TOC_CACHE, DroneLink, Pacer, close_all, connect_swarm,
                                             emergency_stop)
from nanoswarm.firmware_bridge.manifest import SwarmManifest, load_manifest, radio_dongles
from nanoswarm.firmware_bridge.mission import Mission, MissionSequencer, Phase, load_mission, plan_mission
from nanoswarm.firmware_bridge.mocap import MotionCapture, PositionSource, SimulatedMocap
from nanoswarm.firmware_bridge.pilots import Pilot, make_pilot
from nanoswarm.firmware_bridge.plot import plot_flight
from nanoswarm.firmware_bridge.safety import flight_alerts, preflight_problems
from nanoswarm.firmware_bridge.status import status_table
from nanoswarm.firmware_bridge.telemetry import DroneTelemetry, Snapshot

STREAMING_DRONES_PER_RADIO = 4
LIVE_HZ = 4.0
PREFLIGHT_POLL_S = 0.1
BATTERY_WARN_MARGIN_V = 0.2   # the status table shows a battery this close to land_battery_v in yellow


@dataclass
class LoopStats:
    """How the bridge kept up: per-cycle work time of the loop, and per-drone rates."""

    work_s: list[float] = field(default_factory=list)
    late_cycles: int = 0              # cycles that started more than one period late
    cpu_s: float = 0.0                # this process's CPU time (all threads) while the loop ran

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.work_s, q) * 1000.0) if self.work_s else math.nan


@dataclass
class FlightSummary:
    """What `run_fly` reports: the mission's outcome and how the link and loop performed."""

    swarm: str
    mission: str
    mode: str
    dry_run: bool
    drones: int
    completed: bool                    # the plan ran to its landing with no drone-wide abort
    aborted: str | None                # why the swarm landed early or was stopped
    goals_reached: int                 # drone-goals met within goal_tolerance (takeoff not counted)
    goals_asked: int
    min_separation_m: float            # closest approach of two airborne drones, from telemetry
    collisions: int | None             # from the virtual swarm; None on hardware (not measurable)
    link_losses: int
    battery_landings: int
    emergency_stop_s: float | None     # time to send every stop, when there was one
    duration_s: float                  # take-off command to the end of the landing
    telemetry_hz: float                # state samples per drone and second, mean over drones
    telemetry_hz_min: float            # of the drone that got the fewest
    stream_hz: dict[str, float]        # per stream (app goals, setpoint, extpos): sends per drone and second
                                       # while it ran, mean over drones
    loop_ms_p50: float                 # work time of one loop cycle
    loop_ms_p99: float
    loop_late_cycles: int              # cycles that started more than one period late
    cpu_percent: float                 # this process's CPU while the loop ran, % of one core (all its threads:
                                       # cflib's, the senders', and an in-process virtual swarm's)
    log_dir: str
    plot: str | None = None
    report: str | None = None          # report.md in the log folder (figures, metrics)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Flight:
    """One flight of connected drones through planned phases; `run_fly` builds and runs it."""

    def __init__(self, manifest: SwarmManifest, mission: Mission, phases: list[Phase], links: list[DroneLink],
                 log: FlightLog, laptop_policy: LaptopPolicy | None, mocap: PositionSource | None,
                 stop: threading.Event, console: Console | None):
        self.manifest, self.mission, self.phases, self.links, self.log = manifest, mission, phases, links, log
        self.arena = manifest.load_arena()
        self.ids = manifest.ids
        self.stop = stop
        self.console = console
        self.mocap = mocap
        self.pilot: Pilot = make_pilot(links, mission, laptop_policy)
        self.telemetry = [DroneTelemetry(link, manifest.telemetry_hz, attitude=mission.mode == "laptop",
                                         sink=log.telemetry) for link in links]
        n = len(links)
        self.states = ["ground"] * n
        self.sequencer = MissionSequencer(phases, mission.goal_tolerance, mission.landed_height)
        self.stats = LoopStats()
        self.aborted: str | None = None
        self.link_losses = 0
        self.battery_landings = 0
        self.emergency_s: float | None = None
        self.min_separation = math.inf
        self.started = self.ended = time.monotonic()
        self._alerted: set[tuple[str, int]] = set()
        self._samples_at_start = [0] * n
        self._mocap_pacer = Pacer(manifest.mocap.rate_hz if manifest.mocap else 1.0, mission.loop_hz)
        self._live_pacer = Pacer(LIVE_HZ, mission.loop_hz)

    # ------------------------------------------------------------------ before take-off
    def start_telemetry(self) -> None:
        for telemetry in self.telemetry:
            telemetry.start()

    def prepare(self) -> None:
        for line in self.pilot.prepare():
            self.log.event("param", line)

    def preflight(self) -> None:
        """Wait up to preflight_timeout_s for every check to pass (estimators converge, telemetry arrives);
        raise PreflightError with every failing check otherwise."""
        limits = self.mission.safety
        deadline = time.monotonic() + limits.preflight_timeout_s
        while True:
            self.stream_mocap(time.monotonic())
            problems = preflight_problems(self.snapshots(), list(self.manifest.drones), [l.uri for l in self.links],
                                          [t.missing for t in self.telemetry], self.arena, limits, self.mission.mode,
                                          self.manifest.min_separation)
            problems += [f"drone {l.spec.id} ({l.uri}): {l.lost_reason}" for l in self.links if l.lost]
            if not problems:
                self.log.event("preflight", "all checks passed")
                return
            if time.monotonic() >= deadline:
                for line in problems:
                    self.log.event("preflight", line)
                raise PreflightError(f"{len(problems)} problem(s) after {limits.preflight_timeout_s} s:\n  "
                                     + "\n  ".join(problems))
            time.sleep(PREFLIGHT_POLL_S)

    # ------------------------------------------------------------------ the mission loop
    def snapshots(self) -> list[Snapshot]:
        return [t.snapshot() for t in self.telemetry]

    def indices(self, *states: str) -> list[int]:
        return [i for i, s in enumerate(self.states) if s in states]

    def run(self) -> None:
        """Fly the phases to the end (or to an emergency stop)."""
        now = self.started = time.monotonic()
        self.states = ["flying"] * len(self.links)
        self._samples_at_start = [t.snapshot().samples for t in self.telemetry]
        cpu_start = time.process_time()
        try:
            self._loop(now)
        finally:
            self.stats.cpu_s = time.process_time() - cpu_start

    def _loop(self, now: float) -> None:
        period = 1.0 / self.mission.loop_hz
        phase = self.sequencer.start(now)
        self.log.event("phase", f"{phase.label} begins", now=now)
        self.pilot.begin_phase(now, phase, self.indices("flying"), self.snapshots())
        next_cycle = now
        live = Live(console=self.console, refresh_per_second=LIVE_HZ, transient=False) if self.console else None
        with live if live is not None else nullcontext():
            while not self.sequencer.finished:
                if self.stop.is_set():
                    self.emergency("stop requested (key or caller)")
                    if live is not None:
                        live.update(self.table(self.ended))
                    return
                started = time.perf_counter()
                now = time.monotonic()
                self.cycle(now)
                self.stats.work_s.append(time.perf_counter() - started)
                if live is not None and self._live_pacer.due(now):
                    live.update(self.table(now))
                next_cycle += period
                wait = next_cycle - time.monotonic()
                if wait < -period:
                    self.stats.late_cycles += 1
                    next_cycle = time.monotonic()
                self.stop.wait(max(0.0, wait))
            self.pilot.finish()
            self.ended = time.monotonic()
            self.states = ["landed" if s in ("flying", "landing") else s for s in self.states]
            if live is not None:
                live.update(self.table(self.ended))
        self.log.event("mission", "finished" if self.aborted is None else f"ended after: {self.aborted}")

    def cycle(self, now: float) -> None:
        snaps = self.snapshots()
        self.react(now, snaps)
        positions = np.stack([s.pos for s in snaps])
        active = np.array([s == "flying" for s in self.states])
        transition = self.sequencer.update(now, positions, active)
        if transition is not None:
            ended = transition.ended
            missed = [self.ids[i] for i in np.flatnonzero(active & ~transition.reached)]
            self.log.event("phase", f"{ended.label} ended" + (f" at its timeout, drones {missed} not there"
                                                               if transition.timed_out else ""), now=now)
            if transition.current is not None:
                self.log.event("phase", f"{transition.current.label} begins", now=now)
                self.pilot.begin_phase(now, transition.current, self.indices("flying"), snaps)
        if not self.sequencer.finished:
            self.pilot.tick(now, self.sequencer.phase, self.indices("flying"), snaps)
        self.stream_mocap(now)
        self.track(snaps, now)

    def react(self, now: float, snaps: list[Snapshot]) -> None:
        """The safety rules' alerts, acted on once each."""
        watched = [s in ("flying", "landing") for s in self.states]
        alerts = flight_alerts(snaps, [l.lost_reason for l in self.links], watched, now, self.arena,
                               self.mission.safety)
        for alert in alerts:
            i, drone = alert.drone, self.ids[alert.drone]
            if (alert.kind, i) in self._alerted or self.states[i] not in ("flying", "landing"):
                continue   # acted on already
            self._alerted.add((alert.kind, i))
            self.log.event(alert.kind, alert.message, drone_id=drone, now=now)
            if alert.kind == "link_lost":
                self.states[i] = "lost"
                self.link_losses += 1
                self.pilot.land_one(now, i, snaps[i])   # in case its uplink still works
                if self.mission.on_link_loss == "land_all":
                    self.land_all(now, snaps, f"link to drone {drone} lost")
            elif alert.kind == "battery":
                self.states[i] = "landing"
                self.battery_landings += 1
                self.pilot.land_one(now, i, snaps[i])
            else:
                self.land_all(now, snaps, f"drone {drone} crossed the geofence")

    def land_all(self, now: float, snaps: list[Snapshot], reason: str) -> None:
        if self.aborted is not None or self.sequencer.phase.action == "land":
            return
        self.aborted = reason
        phase = self.sequencer.land_now(now, np.stack([s.pos for s in snaps]), step=len(self.mission.steps) - 1)
        self.log.event("land_all", reason, now=now)
        self.pilot.begin_phase(now, phase, self.indices("flying"), snaps)

    def track(self, snaps: list[Snapshot], now: float) -> None:
        """Closest approach of airborne drones, and drones that finished landing on their own."""
        fresh = [i for i in self.indices("flying", "landing")
                 if snaps[i].age(now) <= self.mission.safety.telemetry_timeout_s]
        airborne = [i for i in fresh if snaps[i].pos[2] > self.mission.landed_height]
        for i, j in itertools.combinations(airborne, 2):
            self.min_separation = min(self.min_separation, float(np.linalg.norm(snaps[i].pos - snaps[j].pos)))
        for i in fresh:
            if self.states[i] == "landing" and i not in airborne:
                self.states[i] = "landed"
                self.log.event("landed", "on the floor", drone_id=self.ids[i], now=now)

    def stream_mocap(self, now: float) -> None:
        if self.mocap is None or not self._mocap_pacer.due(now):
            return
        for link, position in zip(self.links, self.mocap.positions()):
            if position is not None and np.all(np.isfinite(position)):
                x, y, z = (float(v) for v in position)
                link.sender.stream("extpos", lambda cf=link.cf, p=(x, y, z): cf.extpos.send_extpos(*p))

    def emergency(self, reason: str) -> None:
        self.emergency_s = emergency_stop(self.links)
        self.ended = time.monotonic()
        self.aborted = f"emergency stop: {reason}"
        self.states = ["stopped"] * len(self.links)
        self.log.event("emergency_stop", f"{reason}; all stops sent in {self.emergency_s * 1000:.0f} ms")

    def land_everyone(self) -> None:
        """The bridge itself failed mid-flight: ask every airborne drone to land on its own (gentler than
        cutting motors; the senders drain before the links close)."""
        snaps, now = self.snapshots(), time.monotonic()
        for i in self.indices("flying", "landing", "lost"):
            self.pilot.land_one(now, i, snaps[i])

    def table(self, now: float) -> Table:
        phase = "done" if self.sequencer.finished else self.sequencer.phase.label
        return status_table(self.ids, self.snapshots(), self.states, now, phase, elapsed=now - self.started,
                            battery_warn_v=self.mission.safety.land_battery_v + BATTERY_WARN_MARGIN_V)

    def close(self) -> None:
        for telemetry in self.telemetry:
            telemetry.stop()
        close_all(self.links)
        if self.mocap is not None:
            self.mocap.close()

    def summary(self, dry_run: bool, collisions: int | None) -> FlightSummary:
        reached, asked = self.sequencer.goals_reached()
        duration = max(self.ended - self.started, 1e-9)
        samples = np.array([t.snapshot().samples - k for t, k in zip(self.telemetry, self._samples_at_start)],
                           dtype=np.float64)
        keys = sorted({k for link in self.links for k in link.sender.sent if k != "once"})
        streams = {k: float(np.nanmean([link.sender.rate_hz(k) for link in self.links])) for k in keys}
        return FlightSummary(
            swarm=self.manifest.name, mission=self.mission.name, mode=self.mission.mode, dry_run=dry_run,
            drones=len(self.links), completed=self.sequencer.finished and self.aborted is None, aborted=self.aborted,
            goals_reached=reached, goals_asked=asked,
            min_separation_m=self.min_separation if math.isfinite(self.min_separation) else math.nan,
            collisions=collisions, link_losses=self.link_losses, battery_landings=self.battery_landings,
            emergency_stop_s=self.emergency_s, duration_s=duration,
            telemetry_hz=float(samples.mean()) / duration, telemetry_hz_min=float(samples.min()) / duration,
            stream_hz=streams, loop_ms_p50=self.stats.percentile_ms(50), loop_ms_p99=self.stats.percentile_ms(99),
            loop_late_cycles=self.stats.late_cycles, cpu_percent=100.0 * self.stats.cpu_s / duration,
            log_dir=str(self.log.folder))


def default_log_dir(manifest: SwarmManifest, mission: Mission) -> Path:
    return Path("runs") / "fly" / f"{datetime.now():%Y%m%d_%H%M%S}_{manifest.name}_{mission.name}"


def _warn_radio_load(manifest: SwarmManifest, mission: Mission, log: FlightLog) -> None:
    if mission.mode != "laptop":
        return
    for dongle, ids in radio_dongles(manifest).items():
        if len(ids) > STREAMING_DRONES_PER_RADIO:
            log.event("radio", f"radio {dongle} carries {len(ids)} drones {ids} in laptop mode; streamed setpoints "
                               f"reach about 3-4 Crazyflies per radio: spread them over more radios")


def run_fly(swarm: str | SwarmManifest, mission: str | Mission, log_dir: str | Path | None = None, *,
            dry_run: bool = False, mode: str | None = None, policy_dir: str | Path | None = None, virtual: Any = None,
            stop: threading.Event | None = None, console: Console | None = None, keys: IO | None = None,
            toc_cache: Path = DEFAULT_TOC_CACHE, virtual_base_port: int = 19850) -> FlightSummary:
    """Fly `mission` with the swarm of manifest `swarm`; returns the summary (also in LOG_DIR/summary.json).

    mode: fly in this control mode (stock, onboard, laptop) instead of the mission's.
    dry_run: rehearse against a virtual swarm on loopback started here, at `virtual_base_port` (the
        manifest's URIs are ignored; the drones run the nanoswarm app with the policy in `policy_dir`).
    virtual: fly an already running virtual swarm instead (its `uris`, `positions()` and `collisions()`);
        a test uses this to inject faults while the mission flies.
    policy_dir: an export folder (`nanoswarm export --out DIR`): laptop mode flies its policy.onnx, and a
        dry run's virtual drones its C policy.
    toc_cache: the folder of cflib's TOC cache, shared by all drones and flights.
    stop: set it to stop every drone at once (an emergency stop, as Ctrl-C and any key on `keys` are).
    console: show the live status table there.
    """
    manifest = swarm if isinstance(swarm, SwarmManifest) else load_manifest(swarm)
    mission = mission if isinstance(mission, Mission) else load_mission(mission)
    if mode is not None:
        mission = from_mapping(Mission, {**to_mapping(mission), "mode": mode})
    phases = plan_mission(mission, manifest)
    laptop_policy = None
    if mission.mode == "laptop":
        if policy_dir is None:
            raise PolicyError("mission mode 'laptop' flies an exported policy: pass --policy DIR "
                                    "(a folder written by `nanoswarm export`)")
        laptop_policy = LaptopPolicy(Path(policy_dir), mission.laptop, len(manifest.drones))
    if dry_run and virtual is None:
        if mission.mode == "onboard" and policy_dir is None:
            raise PolicyError("a dry run in onboard mode needs the policy the virtual drones fly: pass --policy DIR "
                              "(a folder written by `nanoswarm export`), or --mode stock")
        from nanoswarm.firmware_bridge.virtual import VirtualSwarm

        with VirtualSwarm(len(manifest.drones), policy_dir=policy_dir, arena=manifest.arena,
                          base_port=virtual_base_port, start_positions=np.array([d.start for d in manifest.drones])
                          ) as swarm_:
            return run_fly(manifest, mission, log_dir, policy_dir=policy_dir, virtual=swarm_,
                           stop=stop, console=console, keys=keys, toc_cache=toc_cache)
    uris = list(virtual.uris) if virtual is not None else [d.uri for d in manifest.drones]
    log = FlightLog(Path(log_dir) if log_dir is not None else default_log_dir(manifest, mission), manifest.ids)
    log.write_configs(manifest=manifest, mission=mission)
    _warn_radio_load(manifest, mission, log)
    stop = stop if stop is not None else threading.Event()
    flight = None
    try:
        started = time.monotonic()
        links = connect_swarm(list(manifest.drones), uris, manifest.connect_timeout_s, manifest.connect_retries,
                              toc_cache)
        log.event("connect", f"{len(links)} drones connected in {time.monotonic() - started:.2f} s")
        mocap = None
        if manifest.mocap is not None:
            mocap = (SimulatedMocap(virtual.positions) if virtual is not None
                     else MotionCapture(manifest.mocap, [d.body_name for d in manifest.drones]))
        flight = Flight(manifest, mission, phases, links, log, laptop_policy, mocap, stop, console)
        flight.start_telemetry()
        flight.prepare()
        flight.preflight()
        with KeyWatcher(keys, stop) if keys is not None else nullcontext():
            try:
                flight.run()
            except KeyboardInterrupt:
                flight.emergency("Ctrl-C")
        summary = flight.summary(dry_run=virtual is not None,
                                 collisions=int(virtual.collisions()) if virtual is not None else None)
    except BaseException as err:
        log.event("failed", f"{type(err).__name__}: {err}")
        if flight is not None:
            flight.land_everyone()
        raise
    finally:
        if flight is not None:
            flight.close()
        log.close()
    summary.plot = str(plot_flight(log.folder, manifest.load_arena(),
                                   title=f"{manifest.name}: {mission.name} ({mission.mode})"))
    summary.report = str(log.folder / "report.md")
    log.write_summary(summary.as_dict())
    write_flight_report(log.folder)
    return summary
