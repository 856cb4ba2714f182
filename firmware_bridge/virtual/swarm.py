"""A swarm of virtual Crazyflies that stock cflib flies over `udp://host:base_port+i` as it flies real ones.

`VirtualSwarm` assembles the parts and runs them:
- a simulation thread that ticks at the simulator's control rate in real time, every tick batched over
  all drones: estimate (`estimator`), high-level planner (`high_level`), supervisor (`supervisor`),
  onboard app (`onboard`, the app's own C code), stock controller (`stock`), battery, physics (`world`),
  P2P radio (`radio`), and the log blocks that fall due;
- an I/O thread that receives every drone's datagrams (`link`) and answers them with that drone's CRTP
  services (`firmware`).
Both take one lock, so a packet's effect and a tick never interleave. The drones' clock is the simulated
time (ticks times the control period): when the machine cannot keep up, simulated time runs slower than the
wall clock, consistently for everything onboard (watchdogs, plans, log periods), and `counters()` says so.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nanoswarm.firmware_bridge.virtual.battery import Batteries
from nanoswarm.firmware_bridge.virtual.commander import Commander
from nanoswarm.firmware_bridge.virtual.errors import VirtualSwarmError, VirtualSwarmStopped
from nanoswarm.firmware_bridge.virtual.estimator import Estimate, Estimator
from nanoswarm.firmware_bridge.virtual.firmware import SwarmSystems, VirtualCrazyflie
from nanoswarm.firmware_bridge.virtual.high_level import HighLevelCommander
from nanoswarm.firmware_bridge.virtual.link import Address, DroneLink, IoLoop, LinkFaults
from nanoswarm.firmware_bridge.virtual.onboard import (OUTPUT_FORCES, OUTPUT_MOTORS_OFF, OUTPUT_SETPOINT,
                                                       OUTPUT_STOCK, AppStep, OnboardApps, compile_app)
from nanoswarm.firmware_bridge.virtual.radio import P2PRadio
from nanoswarm.firmware_bridge.virtual.stock import Reference, stock_control
from nanoswarm.firmware_bridge.virtual.supervisor import State, Supervisor
from nanoswarm.firmware_bridge.virtual.telemetry import Telemetry
from nanoswarm.firmware_bridge.virtual.toc import Toc
from nanoswarm.firmware_bridge.virtual.variables import (CONTROLLER_OUT_OF_TREE, ParamValues, app_variables,
                                                          firmware_params, log_variables)
from nanoswarm.firmware_bridge.virtual.world import World
from nanoswarm.sim.config import NoiseConfig
from nanoswarm.sim.dynamics import action_for_thrust, commanded_thrust
from nanoswarm.sim.params import GRAVITY

MAX_DRONES = 255          # P2P ids are one byte
MAX_LAG_S = 0.1           # behind the wall clock by more than this, the simulation stops catching up
SUPERVISOR_MESSAGES = {State.LOCKED: "SUP: Locked, reboot required\n",
                       State.CRASHED: "SUP: Crashed, recovery required\n"}


@dataclass(frozen=True)
class DroneStatus:
    """One virtual drone as the swarm's API reports it."""

    mode: str            # the app's mode (IDLE, POLICY, HOLD, LAND, LANDED) when the app is the controller, else STOCK
    supervisor: int      # supervisor.info bits
    state: str           # the supervisor's state, e.g. FLYING, CRASHED
    armed: bool
    flying: bool
    vbat: float          # V
    neighbors: int       # neighbours the app hears (0 without the app)


class VirtualSwarm:
    """N virtual Crazyflies on `udp://host:base_port+i`, simulated together; use it as a context manager.

    policy_dir: an export folder (`nanoswarm export ... --out DIR`) or a folder with policy.c and policy.h:
        the drones then run the nanoswarm app with that policy (selected as their controller at start);
        without it they fly the stock controller only.
    arena: the room (hardware/arenas name or YAML path). start_positions: (N, 3) or (N, 2) metres on the
        floor, default a grid 0.5 m apart in the middle of the room.
    faults: the CRTP links' faults, both directions; p2p_faults: the radio between drones.
    params: the simulated airframe (hardware/params name or YAML), which must be the one the policy was
        exported for. auto_arm: arm once the pre-flight checks pass (the Crazyflie 2.1); False requires an
        arming request first (the Crazyflie 2.1 Brushless). build_dir: where the compiled app is cached
        (default: a folder in the temp dir).
    """

    def __init__(self, n: int, policy_dir: Path | None = None, arena: str = "lab4x3", host: str = "127.0.0.1",
                 base_port: int = 19850, faults: LinkFaults = LinkFaults(), start_positions: np.ndarray | None = None,
                 seed: int = 0, *, params: str = "crazyflie21_sysid", p2p_faults: LinkFaults = LinkFaults(),
                 auto_arm: bool = True, build_dir: Path | None = None):
        if not (isinstance(n, int) and 1 <= n <= MAX_DRONES):
            raise VirtualSwarmError(f"n = {n!r} drones: a virtual swarm has 1 to {MAX_DRONES} (one-byte P2P ids)")
        if not (isinstance(base_port, int) and 1024 <= base_port and base_port + n <= 65536):
            raise VirtualSwarmError(f"base_port {base_port!r} with {n} drones leaves the ports 1024-65535")
        self.n = n
        self.uris = [f"udp://{host}:{base_port + i}" for i in range(n)]
        self._lock = threading.Lock()
        self._inbox: deque[tuple[int, bytes, Address]] = deque()   # packets that came while the lock was held
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._ticks = 0
        self.late_ticks = 0
        self.handler_errors: list[str] = []

        self.world = World(n, arena, params, start_positions, seed)
        self.dt = self.world.dt
        self.estimator = Estimator(n, NoiseConfig(), seed + 1)
        self.batteries = Batteries(n)
        self.supervisor = Supervisor(n, auto_arm)
        self.commander = Commander(n)
        self.high_level = HighLevelCommander(n, self.commander)
        self.telemetry = Telemetry(n)
        self.apps: OnboardApps | None = None
        if policy_dir is not None:
            library = compile_app(Path(policy_dir), self.world.quad, params, build_dir)
            self.apps = OnboardApps(library, np.arange(n), loop_hz=round(1.0 / self.dt))
        self.radio = P2PRadio(n, p2p_faults, seed + 2)

        self.param_values = ParamValues(n, firmware_params(self.apps is not None, self._reset_estimation))
        param_variables = self.param_values.variables()
        log_vars = log_variables(self.telemetry)
        if self.apps is not None:
            app_logs, app_params = app_variables(self.apps, self._command_set)
            log_vars, param_variables = log_vars + app_logs, param_variables + app_params
        param_toc = Toc(param_variables, "param")
        defaults = [np.array([v.read(i) for i in range(n)]) for v in param_variables]
        self._record_estimate(self.estimator.estimate(self.world.drones(), 0.0))  # readable before the first tick
        self._record_status()
        self.systems = SwarmSystems(clock=self.now, commander=self.commander, high_level=self.high_level,
                                    supervisor=self.supervisor, telemetry=self.telemetry, apps=self.apps,
                                    log_toc=Toc(log_vars, "log"), param_toc=param_toc, defaults=defaults)
        self.io = IoLoop()
        self.links = [DroneLink((host, base_port + i), self.io, self._receiver(i), seed * 1000 + i) for i in range(n)]
        for link in self.links:
            link.set_faults(faults, "both")
        self.drones = [VirtualCrazyflie(i, self.systems, link) for i, link in enumerate(self.links)]
        self._modes = np.zeros(n, dtype=np.int64)
        self._motors_running = np.zeros(n, dtype=bool)

    # ---- lifetime ----------------------------------------------------------------------------------
    def start(self) -> "VirtualSwarm":
        """Open the drones' ports and start simulating; the drones answer from now on."""
        if self._thread is not None:
            raise VirtualSwarmError("this virtual swarm was started already; make a new one")
        opened = []
        try:
            for link in self.links:
                link.open()
                opened.append(link)
        except VirtualSwarmError:
            for link in opened:
                link.close()
            self.io.stop()
            raise
        self.io.start()
        self._thread = threading.Thread(target=self._run, name="nanoswarm-virtual-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop simulating and close every port (idempotent)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for link in self.links:
            self.io.call(link.close)
        self.io.stop()
        if self.apps is not None:
            with self._lock:
                self.apps.close()

    def __enter__(self) -> "VirtualSwarm":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests and tools read and change --------------------------------------------------------
    def now(self) -> float:
        """The drones' clock: simulated seconds since start."""
        return self._ticks * self.dt

    def positions(self) -> np.ndarray:
        """True positions (N, 3) in metres, world frame."""
        with self._locked(), torch.inference_mode():
            return self.world.drones().pos.double().numpy().copy()

    def states(self) -> list[DroneStatus]:
        """Every drone's app mode, supervisor state and bits, arming, battery and neighbours, now."""
        with self._locked():
            names = [State(s).name for s in self.supervisor.state]
            active, flying = self._app_active(), self.supervisor.flying()
            neighbors = ([int(self.apps.variable(i, self._app_variable("nbrs")).value) for i in range(self.n)]
                         if self.apps is not None else [0] * self.n)
            return [DroneStatus(mode=self.apps.mode_name(self._modes[i]) if active[i] else "STOCK",
                                supervisor=int(self.telemetry.info[i]), state=names[i],
                                armed=bool(self.supervisor.armed[i]), flying=bool(flying[i]),
                                vbat=float(self.batteries.voltage[i]), neighbors=neighbors[i])
                    for i in range(self.n)]

    def collisions(self) -> int:
        """Drone-drone contacts since start."""
        with self._locked():
            return self.world.collisions()

    def set_silent(self, drone: int, silent: bool) -> None:
        """A silent drone stops answering: its port closes, and its client's link fails."""
        self.links[self._drone(drone)].set_silent(silent)

    def sag_battery(self, drone: int, volts_per_s: float) -> None:
        """Make a drone's battery fall `volts_per_s` faster than its load explains (0 ends the sag)."""
        if not (math.isfinite(volts_per_s) and volts_per_s >= 0):
            raise VirtualSwarmError(f"volts_per_s must be a finite rate >= 0, got {volts_per_s!r}")
        with self._lock:
            self.batteries.sag_v_per_s[self._drone(drone)] = volts_per_s

    def set_link_faults(self, faults: LinkFaults, drones: list[int] | None = None, direction: str = "both") -> None:
        """Faults of the CRTP links of `drones` (default all), on the way up, down or both."""
        for i in (range(self.n) if drones is None else drones):
            self.links[self._drone(i)].set_faults(faults, direction)

    def set_p2p_faults(self, faults: LinkFaults) -> None:
        """Loss and delay of the P2P radio between the drones' apps (duplicates change nothing there)."""
        with self._lock:
            self.radio.faults = faults

    def counters(self) -> dict[str, object]:
        """How the swarm is doing: simulated time, ticks that ran late, packets dropped as malformed, and
        errors in packet handlers (always empty unless the virtual firmware has a bug)."""
        with self._lock:
            return {"sim_time_s": self.now(), "ticks": self._ticks, "late_ticks": self.late_ticks,
                    "malformed": [d.malformed for d in self.drones], "handler_errors": list(self.handler_errors),
                    "app_self_test_passed": self.apps.self_test_passed if self.apps is not None else None}

    # ---- packets -----------------------------------------------------------------------------------
    def _receiver(self, drone: int):
        """The I/O thread's handler of a drone's packets. It never waits for the lock: a packet that comes
        while a tick runs waits in the inbox, and the tick handles it before it supervises and controls.
        Waiting instead held the I/O thread a tick per packet, so an emergency stop queued behind a drone's
        setpoints took tens of ticks to reach the supervisor on a loaded machine; now it takes at most one."""
        def receive(datagram: bytes, source: Address) -> None:
            self._inbox.append((drone, datagram, source))
            if self._lock.acquire(blocking=False):
                try:
                    self._handle_inbox()
                finally:
                    self._lock.release()
        return receive

    def _handle_inbox(self) -> None:
        """Every waiting packet, in arrival order (called with the lock held)."""
        while self._inbox:
            drone, datagram, source = self._inbox.popleft()
            try:
                self.drones[drone].receive(datagram, source)
            except Exception as err:  # noqa: BLE001 - a bug must not take the link down; it is reported
                self.handler_errors.append(f"drone {drone}, packet {datagram.hex()}: {err!r}")

    def _reset_estimation(self, drone: int, value: float) -> None:
        if value:
            self.estimator.reset(drone, self.now())
            self.param_values["kalman.resetEstimation"][drone] = 0   # the estimator clears it once it has reset

    def _command_set(self, drone: int, _value: float) -> None:
        assert self.apps is not None
        self.apps.command_set(drone, int(self.now() * 1000.0))

    # ---- the simulation ------------------------------------------------------------------------------
    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stopping.is_set():
            try:
                with torch.inference_mode():   # no autograd bookkeeping: a quarter of the tick's time
                    self._tick()
            except Exception as err:  # noqa: BLE001 - kept, and raised to the caller by every API call
                self._error = err
                return
            deadline += self.dt
            wait = deadline - time.monotonic()
            if wait > 0:
                self._stopping.wait(wait)
            elif wait < -MAX_LAG_S:
                self.late_ticks += 1
                deadline = time.monotonic()

    def _tick(self) -> None:
        """One control period of every drone: estimate, plan, supervise, control, fly; then the radio and the
        log blocks due, which report the estimate this tick started from."""
        with self._lock:
            self._handle_inbox()
            now = self.now()
            estimate = self.estimator.estimate(self.world.drones(), now)
            est = estimate.drones
            self._record_estimate(estimate)
            self.high_level.update(now)
            changed = self.supervisor.update(
                now, motors_running=self._motors_running, up_z=self.telemetry.up_z,
                setpoint_age=self.commander.age(now), stop_param=self.param_values["stabilizer.stop"],
                tumble_check=self.param_values["supervisor.tmblChckEn"] != 0)
            for i in changed:
                message = SUPERVISOR_MESSAGES.get(State(self.supervisor.state[i]))
                if message:
                    self.drones[i].console(message)

            allowed = self.supervisor.motors_allowed()
            off = self.commander.motors_off(now)   # what the stock controller makes of the commander's setpoint
            reference = Reference.of(self.commander, self.supervisor.level_out())
            actions = torch.full((self.n, 4), -1.0)
            app_owns = app_off = holding = np.zeros(self.n, dtype=bool)
            if self.apps is not None:
                step = self._onboard_app(estimate, now)
                app_owns, app_off = step.kinds != OUTPUT_STOCK, step.kinds == OUTPUT_MOTORS_OFF
                holding = step.kinds == OUTPUT_SETPOINT   # the app holds a position with the stock controller
                reference.hold(holding, step.hold)
                flies = step.kinds == OUTPUT_FORCES
                if flies.any():
                    params = self.world.params
                    forces = action_for_thrust(torch.as_tensor(step.forces) * params.thrust_max, params)
                    actions = torch.where(torch.as_tensor(flies)[:, None], forces, actions)
            stock_rows = allowed & ((~app_owns & ~off) | holding)
            if stock_rows.any():   # a swarm waiting on the floor needs no controller
                stock = stock_control(est, reference, self.world.params)
                actions = torch.where(torch.as_tensor(stock_rows)[:, None], stock.actions, actions)
                self.telemetry.target_pos, self.telemetry.target_vel = stock.target_pos, stock.target_vel
            motors_off = ~allowed | np.where(app_owns, app_off, off)
            finite = torch.isfinite(actions).all(-1).numpy()
            actions = torch.where(torch.as_tensor(motors_off | ~finite)[:, None], -1.0, actions.clamp(-1.0, 1.0))
            self._motors_running = ~motors_off & finite

            params = self.world.params
            thrust = commanded_thrust(actions, params).sum(-1)
            self.batteries.step((thrust / (params.mass * GRAVITY)).double().numpy(), self.dt)
            self.world.step(actions)
            self._ticks += 1
            self.telemetry.record_motors(actions)
            self._record_status()
            if self.apps is not None:
                self.radio.exchange(self.apps, now)
            for drone in self.drones:
                drone.send_log_data(now)

    def _onboard_app(self, estimate: Estimate, now: float) -> AppStep:
        """The app's tick on the drones whose controller it is (the others are left alone)."""
        est = estimate.drones
        state = torch.cat((est.pos, est.vel, est.quat, est.omega,
                           torch.as_tensor(np.sqrt(estimate.position_variance), dtype=torch.float32)[:, None]), -1)
        step = self.apps.step(state.numpy(), self._app_active(), int(now * 1000.0))
        for i in np.nonzero(step.modes != self._modes)[0]:
            self.drones[i].console(f"NANOSWARM: {self.apps.mode_name(self._modes[i])} -> "
                                   f"{self.apps.mode_name(step.modes[i])} (faults 0x{step.faults[i]:02x})\n")
        self._modes = step.modes.astype(np.int64)
        return step

    def _record_estimate(self, estimate: Estimate) -> None:
        est = estimate.drones
        self.telemetry.record_estimate(est.pos, est.vel, est.quat, est.omega, estimate.position_variance,
                                       estimate.velocity_variance, self.dt)

    def _record_status(self) -> None:
        t = self.telemetry
        t.info = self.supervisor.bits() | self.high_level.bits(self.now())
        t.vbat = self.batteries.voltage.copy()
        t.pm_state = self.batteries.state(self.param_values["pm.lowVoltage"])
        t.battery_level = self.batteries.level_percent()

    # ---- helpers -------------------------------------------------------------------------------------
    def _app_active(self) -> np.ndarray:
        if self.apps is None:
            return np.zeros(self.n, dtype=bool)
        return self.param_values["stabilizer.controller"] == CONTROLLER_OUT_OF_TREE

    def _app_variable(self, name: str):
        assert self.apps is not None
        return next(v for v in self.apps.variables if v.name == name)

    def _drone(self, drone: int) -> int:
        if not (isinstance(drone, (int, np.integer)) and 0 <= drone < self.n):
            raise VirtualSwarmError(f"drone {drone!r} does not exist; this swarm has drones 0 to {self.n - 1}")
        return int(drone)

    def _locked(self) -> threading.Lock:
        """The swarm's lock, once it is known that the simulation still runs."""
        if self._error is not None:
            raise VirtualSwarmStopped(f"the simulation stopped: {self._error!r}") from self._error
        return self._lock
