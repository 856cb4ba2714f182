"""The virtual swarm's physics: one environment of the project's simulator with N drones, stepped by the
control rate's clock.

`SwarmEnv` does the flying (motor lag and noise, rigid-body dynamics, floor, walls, drone-drone collisions,
downwash); this module only places the drones on the floor with their motors off, hands it the actions of
all N drones at once, and reads the state back. The episode never ends (no auto-reset), and the
environment's own observation noise is off: the virtual drones' estimator draws the sensor noise itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nanoswarm.firmware_bridge.virtual.errors import VirtualSwarmError
from nanoswarm.sim import tensor_struct
from nanoswarm.sim.arena import Arena
from nanoswarm.sim.config import EnvConfig, NoiseConfig
from nanoswarm.sim.dynamics import DroneState
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.params import DroneParams

NEVER_ENDS_S = 1e7          # episode length: about four months of flight, never reached
GRID_SPACING = 0.5          # m between neighbouring start positions of the default grid


def grid_positions(n: int, arena: Arena, spacing: float = GRID_SPACING) -> np.ndarray:
    """n start positions (n, 3) on the floor in a grid `spacing` apart, centred in the room, rows along x."""
    columns = max(1, math.ceil(math.sqrt(n * arena.room[0] / arena.room[1])))
    rows = math.ceil(n / columns)
    index = np.arange(n)
    x = (index % columns - (columns - 1) / 2.0) * spacing
    y = (index // columns - (rows - 1) / 2.0) * spacing
    return np.stack([x, y, np.zeros(n)], axis=1)


def check_start_positions(positions: np.ndarray, n: int, arena: Arena, collision_radius: float) -> np.ndarray:
    """Start positions as (n, 3) floats, or an error that names what is wrong with them."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[0] != n or pos.shape[1] not in (2, 3):
        raise VirtualSwarmError(f"start_positions has shape {pos.shape}; give ({n}, 3) positions in metres "
                                f"(or ({n}, 2) on the floor)")
    if pos.shape[1] == 2:
        pos = np.concatenate([pos, np.zeros((n, 1))], axis=1)
    if not np.isfinite(pos).all():
        raise VirtualSwarmError("start_positions holds NaN or infinite values")
    half = np.array([arena.room[0] / 2 - collision_radius, arena.room[1] / 2 - collision_radius])
    outside = np.nonzero((np.abs(pos[:, :2]) > half).any(axis=1) | (pos[:, 2] < 0)
                         | (pos[:, 2] > arena.room[2] - collision_radius))[0]
    if len(outside):
        raise VirtualSwarmError(f"start positions of drones {outside.tolist()} lie outside the arena '{arena.name}' "
                                f"(room {list(arena.room)} m centred on x = y = 0, floor at z = 0): move them "
                                "in, or choose a larger arena")
    gaps = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(n) * 1e9
    if n > 1 and gaps.min() < 2 * collision_radius:
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
        raise VirtualSwarmError(f"drones {i} and {j} start {gaps[i, j]:.3f} m apart, closer than two collision "
                                f"radii ({2 * collision_radius:.3f} m): spread the start positions")
    return pos


class World:
    """N simulated drones (rows), starting on the floor at rest with their motors off."""

    def __init__(self, n: int, arena: str, params: str, start_positions: np.ndarray | None, seed: int):
        config = EnvConfig(num_envs=1, drones_per_swarm=n, num_neighbors=0, scenario="swap_goals", arena=arena,
                           params=params, episode_s=NEVER_ENDS_S, grace_s=0.0, seed=seed,
                           noise=NoiseConfig(position=0.0, velocity=0.0, attitude=0.0, rates=0.0))
        self.env = SwarmEnv(config)
        self.arena = self.env.arena
        self.quad = self.env.quad
        self.dt = self.env.control_dt
        start = grid_positions(n, self.arena) if start_positions is None else start_positions
        self.start = check_start_positions(start, n, self.arena, self.quad.collision_radius)
        self.env.reset(seed)
        state = self.env.state
        pos = torch.as_tensor(self.start, dtype=torch.float32).unsqueeze(0)
        zeros3 = torch.zeros_like(pos)
        quat = torch.zeros(1, n, 4)
        quat[..., 0] = 1.0
        state.drones = tensor_struct.map_tensors(
            DroneState(pos=pos, vel=zeros3, quat=quat, omega=zeros3, thrust=torch.zeros(1, n, 4),
                       motor_noise=torch.zeros(1, n, 4)), tensor_struct.as_component_major)
        state.action_delay.history.zero_()
        state.goals = pos.clone()
        self.params: DroneParams = tensor_struct.map_tensors(state.params, lambda t: t[0])

    def drones(self) -> DroneState:
        """The true state of the N drones (rows)."""
        return tensor_struct.map_tensors(self.env.state.drones, lambda t: t[0])

    def step(self, actions: torch.Tensor) -> None:
        """Advance all drones by one control step with actions (N, 4) in [-1, 1]."""
        self.env.step(actions.unsqueeze(0))

    def collisions(self) -> int:
        """Drone-drone contacts so far (each contact counts for both drones in the environment's statistics)."""
        return int(self.env.state.stats.drone_collisions.sum()) // 2
