"""Reactive avoidance (`nanoswarm.sim.avoidance`): the kickstart expert's way round neighbours and columns.

Unit checks of each term's geometry, then the property it is for: flown by the geometric controller in
the simulator, a crossing swarm and a drone among columns collide far less than without it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nanoswarm.config import ConfigError, from_mapping
from nanoswarm.sim.avoidance import AvoidanceGains, avoiding_velocity, column_avoidance, neighbour_avoidance
from nanoswarm.sim.config import EnvConfig, NoiseConfig
from nanoswarm.sim.controller import GeometricGains
from nanoswarm.sim.obstacles import GRID_OFFSETS
from nanoswarm.training.config import ExpertConfig

from conftest import expert_episode

GAINS = AvoidanceGains()
# Switches every term off: what the plain geometric controller flies.
NO_AVOIDANCE = dataclasses.replace(GAINS, dodge_speed=1e-9, side_speed=0.0, repel_speed=0.0, slide_speed=0.0,
                                   column_braking=1e6, column_stop=0.0, brake_lead_s=0.0)


def column_grid(normal_xy: tuple[float, float], surface_distance: float) -> torch.Tensor:
    """The 9-point distance grid of a drone `surface_distance` from a flat-faced column whose outward
    normal is `normal_xy` (a wall is the large-radius limit of a column)."""
    n = torch.tensor(normal_xy)
    offsets = torch.tensor(GRID_OFFSETS)
    return (surface_distance + offsets @ n).clamp_max(0.5)


def test_a_head_on_pair_parts_sideways_in_opposite_directions():
    """Two drones 1 m apart closing at 2 m/s: each backs off and steps to its right, so they pass."""
    rel_pos = torch.tensor([[[1.0, 0.0, 0.0]], [[-1.0, 0.0, 0.0]]])
    rel_vel = torch.tensor([[[-2.0, 0.0, 0.0]], [[2.0, 0.0, 0.0]]])
    a, b = neighbour_avoidance(rel_pos, rel_vel, GAINS)
    assert a[0] < -0.1 and a[1] < -0.1            # back and to the right of +x (that is -y)
    assert torch.allclose(a, -b, atol=1e-6)       # the neighbour does the mirror image


def test_neighbours_resting_close_are_pushed_apart_without_circling():
    """A shared goal leaves drones side by side and still: only the repulsion acts, along the line."""
    push = neighbour_avoidance(torch.tensor([[0.3, 0.0, 0.0]]), torch.zeros(1, 3), GAINS)
    assert push[0] < -0.3 and push[1].abs() < 1e-6 and push[2].abs() < 1e-6


def test_neighbours_far_or_parting_change_nothing():
    far = neighbour_avoidance(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[-0.5, 0.0, 0.0]]), GAINS)
    parting = neighbour_avoidance(torch.tensor([[0.7, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]), GAINS)
    assert torch.equal(far, torch.zeros(3)) and torch.equal(parting, torch.zeros(3))


def test_the_speed_towards_a_column_is_capped_by_the_gap_left():
    """Flying at a column face (normal +x, so the column lies in -x) at 1 m/s: the command towards it
    shrinks as the gap closes and becomes a push out inside `column_stop`."""
    desired = torch.tensor([-1.0, 0.0, 0.3])
    towards = []
    for gap in (0.45, 0.3, 0.2, 0.1):
        out = column_avoidance(desired, torch.zeros(3), desired, column_grid((1.0, 0.0), gap), GAINS)
        towards.append(-float(out[0]))
        assert float(out[2]) == pytest.approx(0.3)   # columns are vertical: height is left alone
    assert towards == sorted(towards, reverse=True) and towards[0] < 1.0 and towards[-1] < 0.0


def test_a_columns_speed_cap_looks_ahead_by_the_present_speed():
    """The same gap allows less when the drone already flies at the column: the loop lags its command."""
    desired, grid = torch.tensor([-0.5, 0.0, 0.0]), column_grid((1.0, 0.0), 0.35)
    resting = column_avoidance(desired, torch.zeros(3), desired, grid, GAINS)
    rushing = column_avoidance(desired, torch.tensor([-1.0, 0.0, 0.0]), desired, grid, GAINS)
    assert float(rushing[0]) > float(resting[0]) + 0.3


def test_a_drone_slides_round_a_column_on_the_side_it_is_moving_to():
    grid, goal_behind = column_grid((1.0, 0.0), 0.2), torch.tensor([-3.0, 0.0, 0.0])
    for side in (1.0, -1.0):
        out = column_avoidance(torch.zeros(3), torch.tensor([0.0, side * 0.5, 0.0]), goal_behind, grid, GAINS)
        assert float(out[1]) * side > 0.2


def test_a_column_out_of_sensing_range_changes_nothing():
    velocity = torch.tensor([0.4, -1.0, 0.2])
    out = avoiding_velocity(velocity, velocity, velocity, torch.zeros(0, 3), torch.zeros(0, 3),
                            torch.full((9,), 0.5), GAINS)
    assert torch.equal(out, velocity)


def test_expert_config_is_checked_and_names_the_field():
    config = from_mapping(ExpertConfig, {"max_speed": 0.7, "avoidance": {"safe_distance": 0.8}})
    assert config.max_speed == 0.7 and config.avoidance.safe_distance == 0.8
    with pytest.raises(ConfigError, match="avoidance.safe_distance"):
        from_mapping(ExpertConfig, {"avoidance": {"safe_distance": 0.1}})
    with pytest.raises(ConfigError, match="max_speed"):
        from_mapping(ExpertConfig, {"max_speed": 0.0})


def collision_rate(config: EnvConfig, gains: AvoidanceGains, max_speed: float = 1.5) -> float:
    """Fly the expert with `gains` for one whole episode; the fraction of drones that collided."""
    return float(expert_episode(config, GeometricGains(max_speed=max_speed), gains)["collision_rate"].mean())


def test_avoidance_keeps_a_swapping_swarm_apart():
    """Eight drones swap places through the middle: the plain controller collides, the avoiding one
    should not (measured: about a third of drones against none)."""
    config = EnvConfig(num_envs=4, drones_per_swarm=8, num_neighbors=6, scenario="swap_goals", episode_s=6.0,
                       noise=NoiseConfig.off(), seed=3)
    plain, avoiding = collision_rate(config, NO_AVOIDANCE), collision_rate(config, GAINS)
    assert plain > 0.1 and avoiding <= 0.25 * plain


def test_avoidance_keeps_a_drone_off_the_columns():
    """At the column benchmark's density and the speed the swarm8_obstacles expert flies."""
    config = EnvConfig(num_envs=32, drones_per_swarm=1, num_neighbors=0, scenario="obstacles",
                       obstacle_density=0.2, episode_s=8.0, noise=NoiseConfig.off(), seed=5)
    plain, avoiding = collision_rate(config, NO_AVOIDANCE, 0.7), collision_rate(config, GAINS, 0.7)
    assert plain > 0.1 and avoiding <= 0.4 * plain    # measured: 0.19 against 0.03
