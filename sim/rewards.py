"""Per-drone reward of one control step (weights in `RewardConfig`)."""

from __future__ import annotations

import torch

from nanoswarm.sim.config import RewardConfig


def step_reward(
    w: RewardConfig, dt: float, penalty_scale: torch.Tensor | float, distance: torch.Tensor, action: torch.Tensor,
    on_floor: torch.Tensor, on_wall: torch.Tensor, up_z: torch.Tensor, vel: torch.Tensor, omega: torch.Tensor,
    drone_impacts: torch.Tensor,
    obstacle_impacts: torch.Tensor, pair_dist: torch.Tensor,
) -> torch.Tensor:
    """Reward (E, M): goal distance, effort, floor, wall, attitude, speed, rate and yaw-rate costs and the arrival bonus
    per second of flight, and impact and proximity penalties scaled by `penalty_scale` (annealed in by training).

    up_z is R[2, 2], the world z component of the body z axis (1 upright, -1 upside down).
    pair_dist is (E, M, M) with +inf on the diagonal.
    """
    shaping = (w.distance * distance
               + w.effort * torch.linalg.vector_norm(action, dim=-1)
               + w.floor * on_floor.float()
               + w.wall * on_wall.float()
               + w.attitude * (1.0 - up_z)
               + w.velocity * torch.linalg.vector_norm(vel, dim=-1)
               + w.rates * torch.linalg.vector_norm(omega, dim=-1)
               + w.yaw_rate * omega[..., 2].abs()
               - w.arrival * torch.exp(-(distance / w.arrival_range).square()))
    closeness = (1.0 - pair_dist / w.proximity_range).clamp_min(0.0).sum(-1)
    penalties = (w.collision * drone_impacts + w.obstacle_collision * obstacle_impacts
                 + w.proximity * w.proximity_max * closeness)
    return -dt * shaping - penalty_scale * penalties
