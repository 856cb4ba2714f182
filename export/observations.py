"""Observations to check exported policies on: wide random ones, and ones recorded in flight.

An exported model must match torch on everything a drone can see, not only on the narrow band a
trained swarm visits. `random_observations` covers the physically possible range of every block
(wider than normal flight, so the normalisation clip and saturated activations are exercised);
`recorded_observations` is what the policy really sees when it flies, including the sensing noise
and neighbour geometry of the environment. Both build the vector with the simulator's own
`build_observation`, so the block order is the layout's by construction.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from nanoswarm.export.errors import ObservationError
from nanoswarm.policies import SwarmPolicy
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.dynamics import rotation_matrix
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.observation import OBSTACLE_POINTS, ObservationLayout, build_observation

# Half-widths of the uniform ranges per block (SI units): a 10 m room, a nano quadrotor's speeds and
# body rates including tumbling recoveries, the room's height.
GOAL_OFFSET_M = 5.0
SPEED_M_S = 3.0
RATES_RAD_S = 10.0
MAX_HEIGHT_M = 3.0
NEIGHBOR_OFFSET_M = 3.0


def random_observations(layout: ObservationLayout, n: int, seed: int,
                        sense_range: float = EnvConfig.obstacle_sense_range) -> np.ndarray:
    """(n, layout.size) float32 observations, every block drawn across what a drone can really see:
    goal offsets within +-5 m, velocities +-3 m/s, uniformly random rotation matrices, body rates
    +-10 rad/s, heights 0-3 m, neighbours within +-3 m (sorted nearest first, as the simulator
    orders them) moving at +-3 m/s relative, obstacle distances within [0, sense_range]."""
    g = torch.Generator().manual_seed(seed)

    def uniform(half_width: float, *shape: int) -> torch.Tensor:
        return (2 * torch.rand(n, *shape, generator=g) - 1) * half_width

    quat = torch.randn(n, 4, generator=g)  # normalised Gaussians are uniform on the rotation group
    quat = quat / quat.norm(dim=-1, keepdim=True)
    k = layout.num_neighbors
    nb_pos = uniform(NEIGHBOR_OFFSET_M, k, 3)
    order = nb_pos.norm(dim=-1).argsort(dim=-1)
    nb_pos = nb_pos.gather(1, order.unsqueeze(-1).expand(-1, -1, 3))
    obs = build_observation(
        uniform(GOAL_OFFSET_M, 3), uniform(SPEED_M_S, 3), rotation_matrix(quat), uniform(RATES_RAD_S, 3),
        MAX_HEIGHT_M * torch.rand(n, 1, generator=g), nb_pos, uniform(SPEED_M_S, k, 3),
        sense_range * torch.rand(n, OBSTACLE_POINTS, generator=g))
    return obs.numpy().astype(np.float32)


def recorded_observations(policy: SwarmPolicy, env_config: EnvConfig, n: int, seed: int,
                          steps: int = 200) -> np.ndarray:
    """(n, obs) float32 observations the policy produced flying its deterministic action in `env_config`.

    The flight lasts at most `steps` control steps (2 s at 100 Hz: take-off, the widest goal offsets
    and speeds); enough environments fly side by side to collect n observations in that time. Each
    step costs about the same at small batch sizes, so time, not drones, sets the cost: pass the
    episode length to sample whole episodes.
    """
    if policy.layout.num_neighbors != env_config.num_neighbors:
        raise ObservationError(f"the policy observes K={policy.layout.num_neighbors} neighbours, the environment "
                               f"K={env_config.num_neighbors}; set env_config.num_neighbors to the policy's")
    num_envs = math.ceil(n / (env_config.drones_per_swarm * max(1, min(steps, env_config.episode_steps))))
    env = SwarmEnv(dataclasses.replace(env_config, num_envs=num_envs, seed=seed))
    device = next(policy.parameters()).device
    obs = env.reset(seed)
    frames = [obs.clone()]
    collected = obs.shape[0] * obs.shape[1]
    with torch.inference_mode():
        while collected < n:
            obs = env.step(policy.deterministic_action(obs.to(device))).observation
            frames.append(obs.clone())
            collected += obs.shape[0] * obs.shape[1]
    flat = torch.cat([frame.reshape(-1, env.obs_size).cpu() for frame in frames])
    return flat[:n].numpy().astype(np.float32)
