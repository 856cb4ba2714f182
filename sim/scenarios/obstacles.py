"""Fly among columns: starts and goals in random free cells of the obstacle grid."""

from __future__ import annotations

import torch

from nanoswarm.sim.obstacles import sample_occupancy
from nanoswarm.sim.scenarios.base import EpisodeStart, Scenario


class Obstacles(Scenario):
    """Columns fill `obstacle_density` of the grid cells; each drone starts in a random free cell and
    flies to another. Drones that share a cell are stacked 0.5 m apart in height."""

    name = "obstacles"

    def _free_cell_points(self, occupancy: torch.Tensor) -> torch.Tensor:
        n = occupancy.shape[0]
        m = self.ctx.drones
        grid = self.ctx.obstacle_grid
        free = ~occupancy.reshape(n, -1)
        scores = torch.rand(free.shape, generator=self.ctx.generator, device=self.ctx.device)
        order = torch.where(free, scores, scores - 2.0).argsort(dim=1, descending=True)
        n_free = free.sum(1, keepdim=True)
        slot = torch.arange(m, device=self.ctx.device).unsqueeze(0)
        cell = torch.gather(order, 1, slot % n_free)
        level = slot // n_free                                           # how many drones share the cell
        centres = grid.centres(self.ctx.device).reshape(-1, 2)[cell]     # (n, M, 2)
        # Free cells keep the drone clear of any neighbouring column: stay near the centre.
        xy = centres + self.ctx.uniform(n, m, 2, low=-0.15, high=0.15) * grid.cell
        low, high = self.ctx.arena.flight_height
        z = low + 0.5 * level + self.ctx.uniform(n, m, low=0.0, high=0.25)
        return torch.cat((xy, z.clamp(max=high).unsqueeze(-1)), dim=-1)

    def start(self, n: int) -> EpisodeStart:
        density = torch.full((n,), self.ctx.config.obstacle_density, device=self.ctx.device)
        occupancy = sample_occupancy(self.ctx.obstacle_grid, density, self.ctx.generator)
        episode = self._episode(self._free_cell_points(occupancy), self._free_cell_points(occupancy))
        episode.occupancy = occupancy
        return episode
