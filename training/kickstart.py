"""Kickstart: before PPO, the actor learns to fly from the geometric controller (DAgger).

PPO from scratch spent 8-10 M agent steps learning not to fall out of a throw, and then settled into
orbits around its goal, spinning about yaw. The geometric controller already recovers, holds zero yaw
and approaches goals (it ignores neighbours and its precision is limited by the motor lag), so
imitating it first gives PPO a policy that flies, and PPO's samples go to what the controller cannot do:
precision, and flying among neighbours and obstacles. The controller reads only what the drone's own
observation holds, so the student can match it exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from nanoswarm.policies import SwarmPolicy
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.avoidance import AvoidanceGains, avoiding_velocity
from nanoswarm.sim.controller import GeometricGains, goal_velocity, velocity_control
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.params import load_params, nominal_drone_params
from nanoswarm.training.dagger import DaggerConfig, run_dagger


class ControllerExpert:
    """The geometric controller with reactive avoidance of neighbours and columns as a DAgger expert:
    observations in, actions out, nominal airframe. Without neighbours or sensed columns it is the plain
    geometric controller."""

    def __init__(self, layout: ObservationLayout, env_config: EnvConfig, gains: GeometricGains = GeometricGains(),
                 avoidance: AvoidanceGains = AvoidanceGains()):
        self.slices = layout.slices
        self.num_neighbors = layout.num_neighbors
        physics_dt = 1.0 / env_config.physics_hz
        self.params = nominal_drone_params(load_params(env_config.params), 1, physics_dt, env_config.device)
        self.gains = gains
        self.avoidance = avoidance

    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(-1, obs.shape[-1])
        s = self.slices
        to_goal = -flat[:, s["self.rel_goal"]]
        neighbours = flat[:, s["neighbors"]].reshape(flat.shape[0], self.num_neighbors, 6)
        vel = flat[:, s["self.vel"]]
        velocity = avoiding_velocity(goal_velocity(to_goal, self.gains), vel, to_goal, neighbours[..., :3],
                                     neighbours[..., 3:], flat[:, s["obstacles"]], self.avoidance)
        action = velocity_control(velocity, vel, flat[:, s["self.rot"]].reshape(-1, 3, 3),
                                  flat[:, s["self.omega"]], self.params, self.gains)
        return action.reshape(*obs.shape[:-1], 4)


def kickstart(policy: SwarmPolicy, env_config: EnvConfig, config: DaggerConfig, seed: int,
              log: Callable[[str], None], expert: ControllerExpert | None = None, compile: bool = False) -> int:
    """Teach `policy` (actor and observation normalisation) to fly like `expert` (default: the geometric
    controller with default avoidance) in `env_config`'s task; returns the agent steps flown, which count
    as training samples."""
    env = SwarmEnv(dataclasses.replace(env_config, num_envs=config.num_envs, seed=seed))
    run_dagger(expert or ControllerExpert(policy.layout, env_config), policy, env, config, seed, update_norm=True,
               log=log, compile=compile)
    return config.iterations * config.rollout_steps * config.num_envs * env_config.drones_per_swarm
