"""Evaluation: fly the deterministic policy for whole episodes and report the metrics of the anchors.

Every episode starts at once (one environment each) and all end together, so the metrics come from
the last step's episode report: success rate (goal reached without any collision), collision rate
(fraction of drones with at least one collision after the grace period), collisions per drone-minute,
mean final distance. A few episodes are recorded for reports and videos: positions, goals, attitudes and
motor commands, copied off the device for those episodes only.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from nanoswarm.config import from_mapping, require
from nanoswarm.policies import SwarmPolicy
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.viz.record import SwarmRecord

HEADLINE = ("success_rate", "collision_rate", "collisions_per_drone_minute", "final_distance_m")


@dataclass
class Trajectories:
    """Recorded episodes: positions and goals (T, n, M, 3), obstacles of those episodes, and where recorded,
    attitudes (T, n, M, 4; w, x, y, z) and actions (T, n, M, 4; sample t is the action flown from sample t)."""

    positions: torch.Tensor
    goals: torch.Tensor
    occupancy: torch.Tensor      # (n, nx, ny) bool
    cell_centres: torch.Tensor   # (nx, ny, 2)
    obstacle_radius: float
    collision_radius: float
    control_dt: float
    quats: torch.Tensor | None = None
    actions: torch.Tensor | None = None
    room: tuple[float, float, float] | None = None

    def records(self) -> list[SwarmRecord]:
        """One record per recorded episode; motor commands are the actions' fractions (a + 1) / 2."""
        t = np.arange(self.positions.shape[0]) * self.control_dt
        centres = self.cell_centres.reshape(-1, 2).numpy()

        def episode(values: torch.Tensor | None, e: int) -> np.ndarray | None:
            return None if values is None else values[:, e].double().numpy()

        return [SwarmRecord(
            t=t, pos=episode(self.positions, e), goals=episode(self.goals, e),
            collision_radius=self.collision_radius, names=[str(d) for d in range(self.positions.shape[2])],
            quat=episode(self.quats, e),
            motors=None if self.actions is None else np.clip((episode(self.actions, e) + 1.0) * 0.5, 0.0, 1.0),
            columns=centres[self.occupancy[e].reshape(-1).numpy()], column_radius=self.obstacle_radius,
            room=self.room, title=f"episode {e}") for e in range(self.positions.shape[1])]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    trajectories: Trajectories


def evaluate_policy(policy: SwarmPolicy, env_config: EnvConfig, episodes: int, seed: int = 0,
                    record: int = 4, make_env: Callable[[EnvConfig], SwarmEnv] = SwarmEnv) -> EvalResult:
    """Run `episodes` episodes of `env_config` (its num_envs and seed are replaced) with the mean action,
    in the environment `make_env` builds (another physics backend: `sim.bullet.env.BulletSwarmEnv`)."""
    config = dataclasses.replace(env_config, num_envs=episodes, seed=seed)
    env = make_env(config)
    obs = env.reset(seed)
    record = min(record, episodes)
    steps = config.episode_steps
    assert env.state is not None
    state = env.state
    positions = torch.empty(steps + 1, record, env.drones, 3)
    goals = torch.empty_like(positions)
    quats = torch.empty(steps + 1, record, env.drones, 4)
    actions = torch.empty_like(quats)
    positions[0], goals[0] = state.drones.pos[:record].cpu(), state.goals[:record].cpu()
    quats[0] = state.drones.quat[:record].cpu()
    occupancy = state.occupancy[:record].cpu()
    policy.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for t in range(steps):
            goals[t + 1] = env.state.goals[:record].cpu()  # goals the coming step flies to
            action = policy.deterministic_action(obs)
            actions[t] = action[:record].cpu()
            result = env.step(action)
            obs = result.observation
            if t < steps - 1:
                positions[t + 1] = env.state.drones.pos[:record].cpu()
                quats[t + 1] = env.state.drones.quat[:record].cpu()
    wall = time.perf_counter() - start
    # The last step restarted the episodes: hold the final state.
    positions[steps], quats[steps], actions[steps] = positions[steps - 1], quats[steps - 1], actions[steps - 1]
    episode = result.info["episode"]
    metrics = {k: float(v.mean()) for k, v in episode.items()}
    metrics.update(episodes=episodes, drones_per_swarm=env.drones, scenario=config.scenario,
                   obstacle_density=config.obstacle_density, seed=seed,
                   agent_steps_per_s=steps * episodes * env.drones / wall)
    return EvalResult(metrics, Trajectories(
        positions=positions, goals=goals, occupancy=occupancy,
        cell_centres=env.obstacle_grid.centres(), obstacle_radius=0.5 * config.obstacle_diameter,
        collision_radius=env.quad.collision_radius, control_dt=env.control_dt, quats=quats, actions=actions,
        room=env.arena.room))


def eval_env_config(checkpoint: dict[str, Any], scenario: str | None = None, drones: int | None = None,
                    obstacle_density: float | None = None, device: str | None = None) -> EnvConfig:
    """The environment a checkpoint was trained in, with the scenario, swarm size or density changed.

    Flying a scenario with columns needs a density: the one given, else the training one, else the
    ICRA 2024 benchmark's 20 %.
    """
    config = from_mapping(EnvConfig, checkpoint["config"]["env"])
    changes: dict[str, Any] = {"device": device or config.device}
    if scenario is not None:
        changes["scenario"] = scenario
    if drones is not None:
        changes["drones_per_swarm"] = drones
    target = changes.get("scenario", config.scenario)
    if target == "obstacles":
        changes["obstacle_density"] = (obstacle_density if obstacle_density is not None
                                       else config.obstacle_density or 0.2)
    else:
        require(obstacle_density is None, "obstacle_density", "columns need --scenario obstacles")
        changes["obstacle_density"] = 0.0
    config = dataclasses.replace(config, **changes)
    config.validate()
    return config
