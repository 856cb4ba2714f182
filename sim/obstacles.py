"""Vertical column obstacles on a grid, the 3x3 distance grid each drone observes, and collisions.

Columns stand floor to ceiling at the centres of occupied cells of a regular grid (one occupancy map
per environment). Because columns never leave their cells, the obstacles that can matter to a drone
are in a small window of cells around it; the window's half-width is derived from the sensing range,
so the windowed answer equals the brute-force minimum over all columns (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nanoswarm.sim.tensor_struct import component_major

# The observed grid: 3 x 3 points at 0.1 m spacing in the horizontal plane, centred on the drone,
# ordered row-major over (dx, dy) in {-0.1, 0, 0.1}^2; point 4 is the drone itself.
GRID_SPACING = 0.1
GRID_OFFSETS = tuple((dx * GRID_SPACING, dy * GRID_SPACING) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
CENTRE_POINT = 4


@dataclass(frozen=True)
class ObstacleGrid:
    """Geometry of the column grid of an arena."""

    cell: float                 # grid pitch (m)
    cells: tuple[int, int]      # number of cells along x and y, the grid centred on x = y = 0
    max_radius: float           # largest column radius that will be placed (m)
    sense_range: float          # distances are clipped to this value (m)

    @property
    def origin(self) -> tuple[float, float]:
        return (-0.5 * self.cells[0] * self.cell, -0.5 * self.cells[1] * self.cell)

    @property
    def window(self) -> int:
        """Half-width in cells of the window that holds every column within sensing range."""
        reach = self.sense_range + self.max_radius + GRID_SPACING * math.sqrt(2.0)
        return max(1, math.ceil(reach / self.cell - 0.5))

    def centres(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Centres (nx, ny, 2) of all cells."""
        ox, oy = self.origin
        xs = ox + self.cell * (torch.arange(self.cells[0], device=device, dtype=torch.float32) + 0.5)
        ys = oy + self.cell * (torch.arange(self.cells[1], device=device, dtype=torch.float32) + 0.5)
        return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), dim=-1)


# Kept out of compiled graphs on purpose: fused into the distance loop, the indirect loads are repeated for
# every grid point and the step gets several times slower than with the lookup done on its own.
@torch.compiler.disable
def window_columns(grid: ObstacleGrid, occupancy: torch.Tensor, pos_xy: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres x, y (E, M, W) and occupancy (E, M, W) of the window of W cells around each drone.

    occupancy: (E, nx, ny) bool; pos_xy: (E, M, 2). Cells outside the grid count as free.
    """
    e, m = pos_xy.shape[:2]
    h = grid.window
    nx, ny = grid.cells
    ox, oy = grid.origin
    span = torch.arange(-h, h + 1, device=pos_xy.device)
    off_x = span.repeat_interleave(2 * h + 1)
    off_y = span.repeat(2 * h + 1)
    cell_ix = torch.floor((pos_xy[..., 0] - ox) / grid.cell).clamp(-h, nx - 1 + h).long()
    cell_iy = torch.floor((pos_xy[..., 1] - oy) / grid.cell).clamp(-h, ny - 1 + h).long()
    ix = cell_ix.unsqueeze(-1) + off_x                                     # (E, M, W)
    iy = cell_iy.unsqueeze(-1) + off_y
    # Pad the map by twice the window width so that every index lands inside it.
    padded = torch.nn.functional.pad(occupancy, (2 * h, 2 * h, 2 * h, 2 * h)).reshape(e, -1)
    flat = (ix + 2 * h) * (ny + 4 * h) + (iy + 2 * h)
    occupied = torch.gather(padded, 1, flat.reshape(e, -1)).reshape(ix.shape)
    return ox + grid.cell * (ix.float() + 0.5), oy + grid.cell * (iy.float() + 0.5), occupied


def distance_grid(grid: ObstacleGrid, occupancy: torch.Tensor, radius: torch.Tensor, pos_xy: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed distance from each of the 9 grid points around each drone to the nearest column surface.

    radius: (E,) column radius per environment. Returns the grid (E, M, 9), clipped to the sensing
    range, and the centre (E, M, 2) of the column nearest to the drone itself (for collisions).
    """
    cx, cy, occupied = window_columns(grid, occupancy, pos_xy)
    offsets = torch.tensor(GRID_OFFSETS, dtype=pos_xy.dtype, device=pos_xy.device)       # (9, 2)
    px = pos_xy[..., 0:1] + offsets[:, 0]                                                 # (E, M, 9)
    py = pos_xy[..., 1:2] + offsets[:, 1]
    dx = px.unsqueeze(-1) - cx.unsqueeze(-2)                                              # (E, M, 9, W)
    dy = py.unsqueeze(-1) - cy.unsqueeze(-2)
    dist = torch.sqrt(dx * dx + dy * dy) - radius.view(-1, 1, 1, 1)
    dist = torch.where(occupied.unsqueeze(-2), dist, float("inf"))
    grid_values = dist.amin(-1).clamp_max(grid.sense_range)
    nearest = dist[..., CENTRE_POINT, :].argmin(-1, keepdim=True)
    nearest_centre = torch.cat((torch.gather(cx, 2, nearest), torch.gather(cy, 2, nearest)), dim=-1)
    return grid_values, nearest_centre


def resolve_obstacle_collisions(
    sdf_centre: torch.Tensor, nearest_centre: torch.Tensor, pos: torch.Tensor, vel: torch.Tensor,
    collision_radius: float, restitution: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bounce drones off columns they touch.

    sdf_centre: (E, M) distance from the drone centre to the nearest column surface.
    Returns new pos and vel (E, M, 3) and the impacts (E, M) (touching and moving into the column).
    """
    px, py, pz = pos.unbind(-1)
    vx, vy, vz = vel.unbind(-1)
    ax, ay = px - nearest_centre[..., 0], py - nearest_centre[..., 1]
    inv = 1.0 / torch.sqrt(ax * ax + ay * ay).clamp_min(1e-6)
    nx, ny = ax * inv, ay * inv                                   # horizontal normal out of the column
    into = vx * nx + vy * ny
    touching = sdf_centre < collision_radius
    impact = touching & (into < 0.0)
    bounce = torch.where(impact, -(1.0 + restitution) * into, 0.0)
    push = torch.where(touching, collision_radius - sdf_centre, 0.0)
    vel = component_major(vx + bounce * nx, vy + bounce * ny, vz)
    pos = component_major(px + push * nx, py + push * ny, pz)
    return pos, vel, impact


def sample_occupancy(grid: ObstacleGrid, density: torch.Tensor, generator: torch.Generator
                     ) -> torch.Tensor:
    """Random occupancy maps (E, nx, ny): exactly round(density * cells) columns per environment."""
    e = density.shape[0]
    nx, ny = grid.cells
    scores = torch.rand((e, nx * ny), generator=generator, device=density.device)
    rank = scores.argsort(dim=1).argsort(dim=1)
    count = torch.round(density * nx * ny).long().unsqueeze(1)
    return (rank < count).reshape(e, nx, ny)
