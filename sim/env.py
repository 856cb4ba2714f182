"""The swarm environment: E environments of M drones stepped together, with auto-reset.

A thin layer over the pure physics (`dynamics.physics_step`) that adds what learning needs: scenarios,
neighbour and obstacle sensing, collisions, noise and latency, rewards, per-episode metrics, snapshots.
All state lives in tensors whose first axis is the environment, so resetting, snapshotting or replaying
any subset of environments is one indexed copy; nothing loops over drones or environments.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nanoswarm.config import ConfigError
from nanoswarm.sim import tensor_struct
from nanoswarm.sim.arena import load_arena
from nanoswarm.sim.clock import EpisodeClock
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.delay import DelayLine
from nanoswarm.sim.draws import DrawLayout, UniformStream, box_muller
from nanoswarm.sim.dynamics import DroneState, hover_thrust, quat_from_rotvec
from nanoswarm.sim.interactions import CollisionResponse, DownwashModel, pairwise
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.obstacles import ObstacleGrid, distance_grid
from nanoswarm.sim.params import (DroneParams, load_params, load_randomization, nominal_drone_params,
                                  randomized_drone_params)
from nanoswarm.sim.scenarios import EpisodeStart, ScenarioContext, make_scenario
from nanoswarm.sim.step import EpisodeStats, Sensing, StepConstants, control_step, observe


# What `info["episode"]` reports for every finished episode (averaged over its drones), in this order.
EPISODE_METRICS = ("success_rate", "collision_rate", "collisions_per_drone", "collisions_per_drone_minute",
                   "drone_collisions_per_drone", "obstacle_collisions_per_drone", "wall_hits_per_drone",
                   "final_distance_m", "time_in_air")
Rows = torch.Tensor | np.ndarray  # environment indices, on the host (numpy) or on the device
# What a NaN or Inf in each stepped quantity most likely means, and what to do about it.
NONFINITE_HINTS = {
    "action": "the policy produced NaN or Inf; check its weights and inputs",
    "observation": "the simulation diverged; check the actions and the parameter set",
    "reward": "a reward term diverged; check the reward weights and the final-observation values",
}


@dataclass
class SwarmState:
    """Everything that determines the future of the environments (environment-first tensors)."""

    drones: DroneState
    params: DroneParams
    action_delay: DelayLine
    obs_delay: DelayLine
    downwash: torch.Tensor          # (E, M, 3) wake acceleration applied during the next step
    goals: torch.Tensor             # (E, M, 3)
    occupancy: torch.Tensor         # (E, nx, ny) bool
    obstacle_radius: torch.Tensor   # (E,)
    success_radius: torch.Tensor    # (E,)
    steps: torch.Tensor             # (E,) control steps since episode start (the host's copy: `EpisodeClock`)
    stats: EpisodeStats


@dataclass
class EpisodePool:
    """Fresh episode starts drawn in bulk, with their first observations, served as episodes end.

    Drawing a handful of episodes every step costs more in Python overhead than the step itself;
    drawing many at once and handing them out keeps auto-reset cheap at any reset rate.
    """

    state: SwarmState
    clock: EpisodeClock
    observation: torch.Tensor
    next: int

    @property
    def remaining(self) -> int:
        return self.observation.shape[0] - self.next


@dataclass
class Snapshot:
    """A full copy of the environments' state, RNGs, penalty scale and episode pool included, for exact replay."""

    state: SwarmState
    clock: EpisodeClock
    observation: torch.Tensor
    rng_state: torch.Tensor
    stream_state: Any
    penalty_scale: torch.Tensor
    pool: EpisodePool | None = None


@dataclass
class StepResult:
    observation: torch.Tensor       # (E, M, obs) after auto-reset
    reward: torch.Tensor            # (E, M)
    done: torch.Tensor              # (E,) bool: the episode hit its time limit (a truncation)
    # indices of the environments whose episodes ended, on the host (known without reading the device)
    ended: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    info: dict = field(default_factory=dict)
    # info["episode"]: metrics of finished episodes, each (n_done,); info["done_envs"]: their indices;
    # info["final_observation"]: (n_done, M, obs) observation before the reset.


class SwarmEnv:
    """Batched swarm environment. `reset()` then `step(action)` with actions (E, M, 4) in [-1, 1].

    check_each_step: raise on a NaN or Inf action or observation at the step it appears. That reads the
    device every step; a caller that keeps what it stepped (the trainer's rollout buffer) turns it off
    and checks the whole rollout at once (`first_nonfinite`), so a GPU step loop never waits for the host.
    """

    def __init__(self, config: EnvConfig, compile: bool = False, check_each_step: bool = True):
        config.validate()
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("config field 'device': CUDA is not available on this machine "
                              "(torch.cuda.is_available() is False); use device: cpu")
        self.config = config
        self.check_each_step = check_each_step
        self.device = torch.device(config.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.stream = UniformStream(config.seed + 1, self.device)  # per-step noise; the generator draws episodes
        self.quad = load_params(config.params)
        self.ranges = load_randomization(config.randomization) if config.randomize else None
        self.arena = load_arena(config.arena)
        self.obstacle_grid = ObstacleGrid(
            cell=self.arena.obstacle_cell, cells=self.arena.obstacle_cells,
            max_radius=0.5 * config.obstacle_diameter, sense_range=config.obstacle_sense_range)
        self.layout = ObservationLayout(num_neighbors=config.num_neighbors)
        self.scenario = make_scenario(ScenarioContext(config, self.arena, self.obstacle_grid, self.generator))
        self.physics_dt = 1.0 / config.physics_hz
        self.control_dt = 1.0 / config.control_hz
        r = self.quad.collision_radius
        noise = config.noise
        self._sensor_sigma = (noise.position, noise.velocity, noise.attitude, noise.rates)
        self.constants = StepConstants(
            substeps=config.substeps, physics_dt=self.physics_dt, control_dt=self.control_dt,
            num_neighbors=config.num_neighbors,
            room_high=(0.5 * self.arena.room[0] - r, 0.5 * self.arena.room[1] - r, self.arena.room[2] - r),
            contact_distance=2.0 * r, collision_radius=r, restitution=config.restitution, grace_s=config.grace_s,
            draws=DrawLayout(motor_normals=4 * config.substeps if config.noise.motor else 0,
                             sensing_normals=12 if max(self._sensor_sigma) > 0 else 0,
                             kick_uniforms=4 if config.collision_spin_kick[1] > 0 else 0),
            sensor_sigma=self._sensor_sigma,
            drag=config.drag and any(d > 0 for d in self.quad.drag),
            has_obstacles=config.scenario == "obstacles",
            collision=CollisionResponse(config.restitution, config.collision_spin_kick, config.contact_friction),
            downwash=DownwashModel(enabled=config.downwash), obstacles=self.obstacle_grid, rewards=config.rewards)
        self.max_latency_steps = self._max_latency_steps()
        self.penalty_scale = torch.ones((), device=self.device)
        self.state: SwarmState | None = None
        self.clock: EpisodeClock | None = None
        self.observation: torch.Tensor | None = None
        self.pool: EpisodePool | None = None
        self.pool_size = max(16, config.num_envs // 32)
        # The step core is pure; compiling it fuses the whole step (see BENCHMARKS.md for the gain).
        self._control_step = torch.compile(control_step, dynamic=False) if compile else control_step

    # ----------------------------------------------------------------------------------------- sizes
    @property
    def num_envs(self) -> int:
        return self.config.num_envs

    @property
    def drones(self) -> int:
        return self.config.drones_per_swarm

    @property
    def obs_size(self) -> int:
        return self.layout.size

    def set_penalty_scale(self, scale: float) -> None:
        """Scale of the collision and proximity penalties, annealed from 0 to 1 by training."""
        self.penalty_scale.fill_(float(scale))

    def _max_latency_steps(self) -> int:
        latency = self.ranges.latency[1] if self.ranges is not None else self.quad.latency
        return round(latency / self.physics_dt)

    # ----------------------------------------------------------------------------------------- reset
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start new episodes in every environment; returns observations (E, M, obs)."""
        if seed is not None:
            self.generator.manual_seed(seed)
            self.stream.seed(seed + 1)
        self.pool = None
        self.state, self.clock, obs = self._start_episodes(self.num_envs)
        self.observation = obs
        return obs

    def stagger(self, generator: torch.Generator) -> None:
        """Advance every episode's clock by a random number of steps, so episodes end at different times.

        Environments reset together stay in lockstep forever (fixed episode length), and a training
        batch then holds only one phase of flight (all take-offs, later all hovering); staggering the
        first episodes' ends spreads the phases evenly. Those first episodes are shorter than usual.
        """
        assert self.state is not None and self.clock is not None, "call reset() before stagger()"
        offsets = torch.randint(self.config.episode_steps, (self.num_envs,), generator=generator,
                                device=generator.device)
        self.state.steps += offsets.to(self.device)
        self.clock.steps += offsets.cpu().numpy()
        self.clock.next_goal_change += offsets.cpu().numpy()

    def ends_within(self, steps: int) -> int:
        """How many episodes will end in the next `steps` steps (see `EpisodeClock.ends_within`)."""
        assert self.clock is not None, "call reset() before ends_within()"
        return self.clock.ends_within(steps, self.config.episode_steps)

    def reserve(self, episodes: int) -> None:
        """Have at least `episodes` fresh episodes drawn and waiting for the coming auto-resets.

        Drawing episodes (mixing scenarios, placing drones among columns) reads the device; a caller
        that reserves what the next steps need, between rollouts, keeps those steps free of host waits.
        """
        if self.pool is None or self.pool.remaining < episodes:
            self.pool = EpisodePool(*self._start_episodes(max(episodes, self.pool_size)), next=0)

    def _start_episodes(self, n: int) -> tuple[SwarmState, EpisodeClock, torch.Tensor]:
        """n new episodes drawn now, their clocks and their first observations."""
        start = self.scenario.start(n)
        state = self._initial_state(start)
        obs = self._observe(state)
        state.obs_delay = DelayLine.filled(obs, state.obs_delay.delay, self.config.noise.observation_latency_steps)
        return state, EpisodeClock.start(start.goal_period, self.control_dt), obs

    def _fresh_episodes(self, n: int) -> tuple[SwarmState, EpisodeClock, torch.Tensor]:
        """n new episodes for auto-reset, served from the pool (refilled in bulk when it runs short)."""
        self.reserve(n)
        assert self.pool is not None
        rows = slice(self.pool.next, self.pool.next + n)
        self.pool.next += n
        return (tensor_struct.select(self.pool.state, rows), tensor_struct.select(self.pool.clock, rows),
                self.pool.observation[rows])

    def _drone_params(self, n: int) -> DroneParams:
        count = n * self.drones
        if self.ranges is None:
            flat = nominal_drone_params(self.quad, count, self.physics_dt, self.device)
        else:
            flat = randomized_drone_params(self.quad, self.ranges, count, self.physics_dt, self.generator,
                                           self.device)
        params = tensor_struct.map_tensors(flat, lambda t: t.reshape(n, self.drones, *t.shape[1:]))
        return params.component_major()

    def _initial_state(self, start: EpisodeStart) -> SwarmState:
        n, m = start.pos.shape[:2]
        dev = self.device
        params = self._drone_params(n)
        hover = hover_thrust(params)
        quat = torch.zeros(n, m, 4, device=dev)
        quat[..., 0] = 1.0
        vel = torch.zeros(n, m, 3, device=dev)
        omega = torch.zeros(n, m, 3, device=dev)
        throw = self.config.throw
        if throw.enabled:
            axis = torch.randn((n, m, 3), generator=self.generator, device=dev)
            axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp_min(1e-6)
            angle = torch.rand((n, m, 1), generator=self.generator, device=dev) * math.radians(throw.max_tilt_deg)
            quat = quat_from_rotvec(axis * angle)
            vel = throw.speed * torch.randn((n, m, 3), generator=self.generator, device=dev)
            omega = throw.rates * torch.randn((n, m, 3), generator=self.generator, device=dev)
        drones = tensor_struct.map_tensors(
            DroneState(pos=start.pos, vel=vel, quat=quat, omega=omega, thrust=hover,
                       motor_noise=torch.zeros(n, m, 4, device=dev)),
            tensor_struct.as_component_major)
        occupancy = start.occupancy if start.occupancy is not None else torch.zeros(
            n, *self.obstacle_grid.cells, dtype=torch.bool, device=dev)
        zeros = torch.zeros(n, m, device=dev)
        obs_placeholder = torch.zeros(n, m, self.obs_size, device=dev)
        obs_delay_steps = torch.full((n, m), self.config.noise.observation_latency_steps, dtype=torch.int64, device=dev)
        return SwarmState(
            drones=drones, params=params,
            action_delay=DelayLine.filled(hover, params.latency_steps, self.max_latency_steps),
            obs_delay=DelayLine.filled(obs_placeholder, obs_delay_steps, self.config.noise.observation_latency_steps),
            downwash=torch.zeros(n, m, 3, device=dev), goals=start.goals, occupancy=occupancy,
            obstacle_radius=torch.full((n,), 0.5 * self.config.obstacle_diameter, device=dev),
            success_radius=start.success_radius,
            steps=torch.zeros(n, dtype=torch.int64, device=dev),
            stats=EpisodeStats(collisions=zeros.long(), drone_collisions=zeros.long(),
                               obstacle_collisions=zeros.long(), wall_hits=zeros.long(), air_steps=zeros.long()),
        )

    # ---------------------------------------------------------------------------------- observation
    def _sensing(self, n: int) -> Sensing | None:
        """Sensor errors for n freshly reset environments (the step draws its own)."""
        if self.constants.draws.sensing_normals == 0:
            return None
        return Sensing.from_normals(box_muller(self.stream.uniforms(n, self.drones, 12)), self._sensor_sigma)

    def _observe(self, s: SwarmState) -> torch.Tensor:
        """Observations (n, M, obs) of the environments held in `s` (all of them, or a fresh subset)."""
        d = s.drones
        grid = distance_grid(self.obstacle_grid, s.occupancy, s.obstacle_radius, d.pos[..., :2])[0]
        return observe(d, s.goals, pairwise(d.pos, d.vel), grid, self.config.num_neighbors,
                       self._sensing(d.pos.shape[0]))

    @staticmethod
    def _check_finite(values: torch.Tensor, what: str, total: torch.Tensor | None = None) -> None:
        """Name the first environment and drone whose `values` (E, M, ...) hold NaN or Inf."""
        where = first_nonfinite(values, 2, total)
        if where is not None:
            raise FloatingPointError(nonfinite_message(what, values, where))

    # ------------------------------------------------------------------------------------------ step
    def step(self, action: torch.Tensor) -> StepResult:
        """Advance every environment by one control step; finished episodes restart automatically."""
        if self.state is None or self.clock is None:
            raise RuntimeError("call reset() before step()")
        s, clock, cfg = self.state, self.clock, self.config
        action = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        expected = (self.num_envs, self.drones, 4)
        if tuple(action.shape) != expected:
            raise ValueError(f"action has shape {tuple(action.shape)}, expected {expected} (envs, drones, motors)")
        if self.check_each_step:
            self._check_finite(action, "action")

        self._change_goals(s, clock)
        uniforms = self.stream.uniforms(self.num_envs, self.drones, self.constants.draws.size)
        out = self._control_step(
            s.drones, s.params, s.action_delay, s.downwash, s.goals, s.occupancy, s.obstacle_radius, s.stats,
            s.steps, tensor_struct.as_component_major(action), uniforms, self.penalty_scale, self.constants)
        s.drones, s.action_delay.history, s.downwash = out.drones, out.action_history, out.downwash
        s.stats, s.steps = out.stats, out.steps
        observation = out.observation
        if self.check_each_step:
            self._check_finite(observation, "observation", out.observation_sum)

        clock.steps += 1
        ending = clock.ending(cfg.episode_steps)
        done = torch.from_numpy(ending).to(self.device, non_blocking=True)
        # The delayed observation is what the policy sees, the final one of an episode included.
        observation = s.obs_delay.push(observation)
        result = StepResult(observation=observation, reward=out.reward, done=done)
        if ending.any():
            result.ended = np.flatnonzero(ending)
            rows = torch.from_numpy(result.ended).to(self.device, non_blocking=True)
            result.info = {"done_envs": rows, "final_observation": observation[rows],
                           "episode": self._episode_metrics(s, rows, out.distance[rows])}
            fresh, fresh_clock, fresh_obs = self._fresh_episodes(rows.numel())
            tensor_struct.assign(s, rows, fresh)
            tensor_struct.assign(clock, result.ended, fresh_clock)
            observation[rows] = fresh_obs
        self.observation = observation
        return result

    def _change_goals(self, s: SwarmState, clock: EpisodeClock) -> None:
        """Move the goals of dynamic scenarios whose period ends with the coming step, before it is taken,
        so that its reward and observation already use the new goals. Episodes that end with the coming
        step restart instead.

        The last goals of an episode are held for at least the shortest goal period: a formation that
        moved half a second before the end could not be reached by any controller, and success would
        measure the timing of the draw, not the flying."""
        final_hold = round(self.config.goal_switch_s[0] / self.control_dt)
        due = clock.goals_due(self.config.episode_steps - final_hold)
        if due.any():
            rows = np.flatnonzero(due)
            device_rows = torch.from_numpy(rows).to(self.device, non_blocking=True)
            s.goals[device_rows] = self.scenario.next_goals(s.goals[device_rows])
            clock.next_goal_change[rows] += clock.goal_period[rows]

    def _episode_metrics(self, s: SwarmState, rows: torch.Tensor, final_distance: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        """Metrics of the episodes ending in environments `rows` (each (n,), averaged over drones)."""
        st = tensor_struct.select(s.stats, rows)
        reached = final_distance < s.success_radius[rows].unsqueeze(1)
        minutes = s.steps[rows].float().unsqueeze(1) * self.control_dt / 60.0
        return dict(zip(EPISODE_METRICS, (
            (reached & (st.collisions == 0)).float().mean(1),
            (st.collisions > 0).float().mean(1),
            st.collisions.float().mean(1),
            (st.collisions.float() / minutes).mean(1),
            st.drone_collisions.float().mean(1),
            st.obstacle_collisions.float().mean(1),
            st.wall_hits.float().mean(1),
            final_distance.mean(1),
            (st.air_steps.float() / s.steps[rows].float().unsqueeze(1)).mean(1),
        )))

    # ------------------------------------------------------------------------------------- snapshots
    def snapshot(self) -> Snapshot:
        """A deep copy of the full state; `restore` continues exactly as the original would."""
        if self.state is None or self.clock is None or self.observation is None:
            raise RuntimeError("call reset() before snapshot()")
        return Snapshot(state=tensor_struct.clone(self.state), clock=tensor_struct.clone(self.clock),
                        observation=self.observation.clone(),
                        rng_state=self.generator.get_state(), stream_state=self.stream.get_state(),
                        penalty_scale=self.penalty_scale.clone(),
                        pool=tensor_struct.clone(self.pool) if self.pool is not None else None)

    def restore(self, snap: Snapshot) -> torch.Tensor:
        self.state = tensor_struct.clone(snap.state)
        self.clock = tensor_struct.clone(snap.clock)
        self.observation = snap.observation.clone()
        self.generator.set_state(snap.rng_state)
        self.stream.set_state(snap.stream_state)
        self.penalty_scale.copy_(snap.penalty_scale)
        self.pool = tensor_struct.clone(snap.pool) if snap.pool is not None else None
        return self.observation

    def export_envs(self, rows: Rows) -> Snapshot:
        """The state of some environments, to restart them (or others) from it later (collision replay).

        Rows given on the host (as the collision replay gives them) keep the export free of device reads."""
        assert self.state is not None and self.clock is not None and self.observation is not None
        snap = Snapshot(state=self.state, clock=self.clock, observation=self.observation,
                        rng_state=self.generator.get_state(), stream_state=self.stream.get_state(),
                        penalty_scale=self.penalty_scale.clone())
        return rows_of(snap, rows)

    def import_envs(self, rows: Rows, part: Snapshot) -> None:
        """Overwrite environments `rows` with states exported earlier (the RNG stays as it is)."""
        assert self.state is not None and self.clock is not None and self.observation is not None
        host_rows, device_rows = split_rows(rows, self.device)
        tensor_struct.assign(self.state, device_rows, part.state)
        tensor_struct.assign(self.clock, host_rows, part.clock)
        self.observation[device_rows] = part.observation


def split_rows(rows: Rows, device: torch.device) -> tuple[np.ndarray, torch.Tensor]:
    """Environment indices for the host's arrays and for the device's tensors. Indices given on the host
    (as the collision replay gives them) cost no wait; indices on a GPU are read back once."""
    host = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows, dtype=np.int64)
    return host, torch.from_numpy(host).to(device, non_blocking=True)


def rows_of(snapshot: Snapshot, rows: Rows) -> Snapshot:
    """Copies of the environments `rows` of a snapshot (state, clock, observation; the RNG states stay shared)."""
    host_rows, device_rows = split_rows(rows, snapshot.observation.device)
    return dataclasses.replace(snapshot, state=tensor_struct.select(snapshot.state, device_rows),
                               clock=tensor_struct.select(snapshot.clock, host_rows),
                               observation=snapshot.observation[device_rows])


def first_nonfinite(values: torch.Tensor, leading: int, total: torch.Tensor | None = None) -> tuple[int, ...] | None:
    """Index over the first `leading` axes of the first entry of `values` that holds NaN or Inf, or None.

    A sum is non-finite whenever any element is, so the common case costs one pass, or none when the
    caller already has the sum (`total`); only a failure pays for the search.
    """
    if bool(torch.isfinite(values.sum() if total is None else total)):
        return None
    bad = (~torch.isfinite(values)).reshape(*values.shape[:leading], -1).any(-1).nonzero()
    return tuple(bad[0].tolist()) if bad.numel() else None



def nonfinite_message(what: str, values: torch.Tensor, where: tuple[int, ...]) -> str:
    """What is not finite where (`where` ends with the environment and the drone), and the likely cause."""
    env, drone = where[-2:]
    return (f"the {what} of environment {env}, drone {drone} is not finite ({values[where].tolist()}); "
            f"{NONFINITE_HINTS[what]}")
