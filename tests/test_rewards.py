"""The per-step reward: shaping terms per second of flight, impact and proximity penalties annealable."""

from __future__ import annotations

import torch

from nanoswarm.sim.config import RewardConfig
from nanoswarm.sim.rewards import step_reward


def reward(penalty_scale: float, impacts: float, pair_dist: float = 10.0, on_wall: bool = False,
           weights: RewardConfig | None = None, speed: float = 0.0, yaw_rate: float = 0.0) -> torch.Tensor:
    dist = torch.full((1, 2, 2), pair_dist)
    dist[0, 0, 0] = dist[0, 1, 1] = float("inf")
    return step_reward(
        weights or RewardConfig(), dt=0.01, penalty_scale=torch.tensor(penalty_scale),
        distance=torch.tensor([[1.0, 2.0]]), action=torch.zeros(1, 2, 4), on_floor=torch.tensor([[False, True]]),
        on_wall=torch.full((1, 2), on_wall), up_z=torch.ones(1, 2),
        vel=torch.tensor([[[speed, 0.0, 0.0]] * 2]), omega=torch.tensor([[[0.0, 0.0, yaw_rate]] * 2]), drone_impacts=torch.full((1, 2), impacts),
        obstacle_impacts=torch.zeros(1, 2), pair_dist=dist)


def test_shaping_terms_scale_with_dt():
    """Far from others and upright: -dt (distance + floor); the floor term only for the grounded drone."""
    assert torch.allclose(reward(1.0, 0.0), torch.tensor([[-0.01 * 1.0, -0.01 * (2.0 + 1.0)]]))


def test_touching_a_wall_or_the_ceiling_costs_its_weight_per_second():
    assert torch.allclose(reward(1.0, 0.0, on_wall=True) - reward(1.0, 0.0), torch.full((1, 2), -0.01 * RewardConfig().wall))


def test_collision_penalty_is_annealed_by_the_penalty_scale():
    """Scale 0 (start of training) ignores impacts; scale 1 charges the full collision weight per impact."""
    assert torch.equal(reward(0.0, 2.0), reward(0.0, 0.0))
    assert torch.allclose(reward(1.0, 2.0) - reward(1.0, 0.0), torch.full((1, 2), -2.0 * RewardConfig().collision))
    assert torch.allclose(reward(0.5, 2.0) - reward(0.5, 0.0), torch.full((1, 2), -1.0 * RewardConfig().collision))


def test_proximity_penalty_grows_inside_its_range():
    w = RewardConfig()
    half_range = reward(1.0, 0.0, pair_dist=0.5 * w.proximity_range) - reward(1.0, 0.0)
    assert torch.allclose(half_range, torch.full((1, 2), -w.proximity * w.proximity_max * 0.5))
    assert torch.equal(reward(1.0, 0.0, pair_dist=w.proximity_range), reward(1.0, 0.0))


def test_speed_costs_its_weight_per_second_per_metre_per_second():
    w = RewardConfig(velocity=0.5)
    assert torch.allclose(reward(1.0, 0.0, weights=w, speed=2.0) - reward(1.0, 0.0, weights=w),
                          torch.full((1, 2), -0.01 * 0.5 * 2.0))


def test_arrival_bonus_pays_near_the_goal_and_fades_with_distance():
    """The first drone is 1 m from its goal: at range 1 m it earns arrival * e^-1 per second; at the default
    0.1 m range, e^-100 (nothing)."""
    wide = RewardConfig(arrival=2.0, arrival_range=1.0)
    bonus = reward(1.0, 0.0, weights=wide) - reward(1.0, 0.0)
    assert torch.allclose(bonus[0, 0], torch.tensor(0.01 * 2.0 * torch.exp(torch.tensor(-1.0))))
    assert torch.allclose(reward(1.0, 0.0, weights=RewardConfig(arrival=2.0)), reward(1.0, 0.0))


def test_yaw_rate_costs_its_own_weight_on_top_of_the_rates_term():
    w = RewardConfig(yaw_rate=0.5)
    spin = reward(1.0, 0.0, weights=w, yaw_rate=-2.0) - reward(1.0, 0.0, weights=w)
    assert torch.allclose(spin, torch.full((1, 2), -0.01 * (0.5 + w.rates) * 2.0))
