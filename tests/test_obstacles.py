"""Specification of the column obstacles (`nanoswarm.sim.obstacles`): occupancy, distance grid, impacts.

The windowed distance grid is checked against a brute-force minimum over ALL columns of the map.
"""

from __future__ import annotations

import math

import pytest
import torch

from nanoswarm.sim.obstacles import (CENTRE_POINT, GRID_OFFSETS, ObstacleGrid, distance_grid,
                                     resolve_obstacle_collisions, sample_occupancy)

CELLS = (8, 8)
MAX_RADIUS = 0.425


def grid_with(sense_range: float) -> ObstacleGrid:
    return ObstacleGrid(cell=1.0, cells=CELLS, max_radius=MAX_RADIUS, sense_range=sense_range)


def brute_force_grid(grid: ObstacleGrid, occupancy: torch.Tensor, radius: torch.Tensor, pos_xy: torch.Tensor
                     ) -> tuple[torch.Tensor, list]:
    """Clipped min over every occupied column of |point - centre| - radius at the 9 points, and the
    centre of the column nearest to each drone's own position (None without any column)."""
    e, m = pos_xy.shape[:2]
    ox, oy = grid.origin
    columns = [[(ox + grid.cell * (ix + 0.5), oy + grid.cell * (iy + 0.5))
                for ix in range(grid.cells[0]) for iy in range(grid.cells[1]) if bool(occupancy[env, ix, iy])]
               for env in range(e)]
    out = torch.empty(e, m, 9, dtype=torch.float64)
    nearest = []
    for env in range(e):
        r = float(radius[env])
        rows = []
        for i in range(m):
            x, y = float(pos_xy[env, i, 0]), float(pos_xy[env, i, 1])
            for p, (ddx, ddy) in enumerate(GRID_OFFSETS):
                d = min((math.hypot(x + ddx - cx, y + ddy - cy) - r for cx, cy in columns[env]), default=math.inf)
                out[env, i, p] = min(d, grid.sense_range)
            rows.append(min(columns[env], key=lambda c: math.hypot(x - c[0], y - c[1]), default=None))
        nearest.append(rows)
    return out, nearest


def test_grid_points_are_row_major_over_dx_then_dy():
    expected = [(dx * 0.1, dy * 0.1) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    assert [pytest.approx(p) for p in GRID_OFFSETS] == expected
    assert GRID_OFFSETS[CENTRE_POINT] == (0.0, 0.0)


@pytest.mark.parametrize("density", [0.0, 0.1, 0.4, 0.8])
def test_sample_occupancy_places_exactly_the_requested_share(density):
    grid = grid_with(0.5)
    occupancy = sample_occupancy(grid, torch.full((16,), density), torch.Generator().manual_seed(1))
    assert occupancy.shape == (16, *CELLS) and occupancy.dtype == torch.bool
    assert occupancy.reshape(16, -1).sum(1).tolist() == [round(density * 64)] * 16
    if 0.0 < density < 0.8:
        assert len({tuple(o.flatten().tolist()) for o in occupancy}) > 1    # maps differ between envs


@pytest.mark.parametrize("sense_range", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_distance_grid_matches_brute_force_over_all_columns(sense_range, seed):
    """Random maps and radii in [0.15, 0.425], drones anywhere (inside the grid, beyond its edge, far away):
    the windowed grid equals the clipped minimum over all columns, and the reported nearest column
    is the nearest one wherever a column is within sensing range."""
    e, m = 6, 24
    gen = torch.Generator().manual_seed(1000 * seed + int(10 * sense_range))
    grid = grid_with(sense_range)
    density = 0.05 + 0.6 * torch.rand(e, generator=gen)
    occupancy = sample_occupancy(grid, density, gen)
    radius = 0.15 + (MAX_RADIUS - 0.15) * torch.rand(e, generator=gen)
    pos_xy = (torch.rand(e, m, 2, generator=gen) - 0.5) * 13.0     # the grid spans [-4, 4]; some drones at +-6.5
    pos_xy[:, 0] = torch.tensor((4.3, -4.2))                       # just beyond the edges
    pos_xy[:, 1] = torch.tensor((0.5, 0.5))                        # on a cell centre
    pos_xy[:, 2] = torch.tensor((1.0, -2.0))                       # on cell corners
    pos_xy[:, 3] = torch.tensor((30.0, -30.0))                     # far outside
    # Drones at the very edges of their cells, where the farthest columns that matter come into range.
    cell = torch.randint(-5, 5, (e, 8, 2), generator=gen).float()
    edge = torch.where(torch.rand(e, 8, 2, generator=gen) < 0.5, 0.005, 0.995)
    pos_xy[:, 4:12] = cell + edge + 0.004 * (torch.rand(e, 8, 2, generator=gen) - 0.5)
    values, centre = distance_grid(grid, occupancy, radius, pos_xy)
    reference, nearest = brute_force_grid(grid, occupancy, radius, pos_xy)
    assert values.shape == (e, m, 9) and centre.shape == (e, m, 2)
    assert bool((reference < sense_range).any()), "the random case should put columns within range"
    assert torch.allclose(values.double(), reference, atol=1e-5, rtol=0.0)
    for env in range(e):
        for i in range(m):
            if reference[env, i, CENTRE_POINT] < sense_range:
                assert centre[env, i].tolist() == pytest.approx(list(nearest[env][i]), abs=1e-5)


@pytest.mark.parametrize("sense_range", [0.5, 1.0, 2.0])
def test_distance_grid_sees_the_farthest_column_within_range(sense_range):
    """A drone at the edge of its cell, a column of the largest radius as many cells away as the range
    allows: the grid point nearest to it reads the true distance, just under the sensing range."""
    grid = grid_with(sense_range)
    occupancy = torch.zeros(1, *CELLS, dtype=torch.bool)
    occupancy[0, 7, 4] = True                                   # centre (3.5, 0.5)
    # Put the nearest grid point (offset +0.1 in x) 0.01 m inside the sensing range of the column surface.
    x = 3.5 - (sense_range - 0.01 + MAX_RADIUS) - 0.1
    pos_xy = torch.tensor([[[x, 0.5]]])
    values, _ = distance_grid(grid, occupancy, torch.tensor([MAX_RADIUS]), pos_xy)
    assert float(values[0, 0, 7]) == pytest.approx(sense_range - 0.01, abs=1e-5)
    assert float(values[0, 0, 1]) == pytest.approx(sense_range, abs=1e-6)       # 0.2 m farther: clipped


def test_distance_grid_without_columns_reads_the_sense_range():
    grid = grid_with(0.5)
    occupancy = torch.zeros(2, *CELLS, dtype=torch.bool)
    pos_xy = torch.tensor([[[0.0, 0.0], [3.9, -3.9]], [[-10.0, 1.0], [0.3, 0.2]]])
    values, _ = distance_grid(grid, occupancy, torch.full((2,), 0.3), pos_xy)
    assert torch.equal(values, torch.full((2, 2, 9), 0.5))


def test_distance_grid_is_signed_inside_a_column():
    """A grid point inside a column reads minus its depth below the column surface."""
    grid = grid_with(1.0)
    occupancy = torch.zeros(1, *CELLS, dtype=torch.bool)
    occupancy[0, 4, 4] = True                                   # cell centre (0.5, 0.5)
    pos_xy = torch.tensor([[[0.45, 0.5]]])
    values, centre = distance_grid(grid, occupancy, torch.tensor([0.3]), pos_xy)
    assert float(values[0, 0, CENTRE_POINT]) == pytest.approx(0.05 - 0.3, abs=1e-6)
    assert float(values[0, 0, 1]) == pytest.approx(0.15 - 0.3, abs=1e-6)                     # offset (-0.1, 0)
    assert float(values[0, 0, 3]) == pytest.approx(math.hypot(0.05, 0.1) - 0.3, abs=1e-6)   # offset (0, -0.1)
    assert float(values[0, 0, 7]) == pytest.approx(0.05 - 0.3, abs=1e-6)                     # offset (+0.1, 0)
    assert centre[0, 0].tolist() == pytest.approx([0.5, 0.5])


# ------------------------------------------------------------------------------------------- impacts
COLUMN = torch.tensor([[[0.5, 0.5]]])
COLLISION_RADIUS = 0.063


def column_sdf(pos: torch.Tensor, radius: float = 0.3) -> torch.Tensor:
    return torch.linalg.vector_norm(pos[..., :2] - COLUMN, dim=-1) - radius


@pytest.mark.parametrize("restitution", [0.0, 0.5, 1.0])
def test_drone_flying_into_a_column_is_flagged_and_bounces(restitution):
    """A drone touching a column and moving into it: an impact; the normal velocity is reflected with
    the restitution, the tangential and vertical ones kept, and the drone is pushed out to touching."""
    normal = torch.tensor([0.6, -0.8])
    pos = torch.cat((COLUMN[0, 0] + (0.3 + 0.03) * normal, torch.tensor([1.0]))).view(1, 1, 3)
    tangent = torch.tensor([0.8, 0.6])
    vel_xy = -1.5 * normal + 0.4 * tangent
    vel = torch.cat((vel_xy, torch.tensor([0.2]))).view(1, 1, 3)
    new_pos, new_vel, impact = resolve_obstacle_collisions(column_sdf(pos), COLUMN, pos, vel, COLLISION_RADIUS,
                                                           restitution)
    assert impact.tolist() == [[True]]
    expected_xy = 1.5 * restitution * normal + 0.4 * tangent
    assert new_vel[0, 0, :2].tolist() == pytest.approx(expected_xy.tolist(), abs=1e-5)
    assert float(new_vel[0, 0, 2]) == pytest.approx(0.2)
    assert float(column_sdf(new_pos)[0, 0]) == pytest.approx(COLLISION_RADIUS, abs=1e-5)
    assert float(new_pos[0, 0, 2]) == pytest.approx(1.0)


def test_drone_touching_a_column_but_leaving_is_pushed_out_without_an_impact():
    normal = torch.tensor([-1.0, 0.0])
    pos = torch.cat((COLUMN[0, 0] + 0.32 * normal, torch.tensor([1.0]))).view(1, 1, 3)
    vel = torch.tensor([[[-0.5, 0.3, 0.0]]])                   # moving away from the column
    new_pos, new_vel, impact = resolve_obstacle_collisions(column_sdf(pos), COLUMN, pos, vel, COLLISION_RADIUS, 0.5)
    assert impact.tolist() == [[False]]
    assert torch.equal(new_vel, vel)
    assert float(column_sdf(new_pos)[0, 0]) == pytest.approx(COLLISION_RADIUS, abs=1e-5)


def test_drone_clear_of_columns_is_untouched():
    pos = torch.tensor([[[0.5, -0.2, 1.0]]])                    # 0.7 m from the centre, 0.4 m from the surface
    vel = torch.tensor([[[0.0, 1.0, 0.0]]])                     # heading straight at it
    new_pos, new_vel, impact = resolve_obstacle_collisions(column_sdf(pos), COLUMN, pos, vel, COLLISION_RADIUS, 0.5)
    assert impact.tolist() == [[False]]
    assert torch.equal(new_pos, pos) and torch.equal(new_vel, vel)


def test_distance_grid_feeds_the_collision_check():
    """End to end: a drone beside a column of the map, moving into it, is an impact and bounces."""
    grid = grid_with(0.5)
    occupancy = torch.zeros(1, *CELLS, dtype=torch.bool)
    occupancy[0, 4, 4] = True
    pos = torch.tensor([[[0.5 - 0.3 - 0.04, 0.5, 1.0]]])
    vel = torch.tensor([[[1.0, 0.0, 0.0]]])
    values, centre = distance_grid(grid, occupancy, torch.tensor([0.3]), pos[..., :2])
    new_pos, new_vel, impact = resolve_obstacle_collisions(values[..., CENTRE_POINT], centre, pos, vel,
                                                           COLLISION_RADIUS, 0.5)
    assert impact.tolist() == [[True]]
    assert new_vel[0, 0].tolist() == pytest.approx([-0.5, 0.0, 0.0], abs=1e-6)
    assert float(new_pos[0, 0, 0]) == pytest.approx(0.5 - 0.3 - COLLISION_RADIUS, abs=1e-6)
