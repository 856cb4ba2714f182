"""Fly among columns: starts and goals in random free cells of the obstacle grid."""

from __future__ import annotations

import torch

from nanoswarm.config import ConfigError
from nanoswarm.sim.obstacles import sample_occupancy
from nanoswarm.sim.scenarios.base import EpisodeStart, Scenario, ScenarioContext


LEVEL_SPACING = 0.5  # m between drones stacked in one cell
LEVEL_JITTER = 0.2   # m of random height on top


class Obstacles(Scenario):
    """Columns fill `obstacle_density` of the grid cells; each drone starts in a random free cell and
    flies to another. Drones that share a cell are stacked at least 0.3 m apart in height (levels
    0.5 m apart, 0.2 m of jitter); the environment refuses a swarm whose levels do not fit."""

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
        low = self.ctx.arena.flight_height[0]
        z = low + LEVEL_SPACING * level + self.ctx.uniform(n, m, low=0.0, high=LEVEL_JITTER)
        return torch.cat((xy, z.unsqueeze(-1)), dim=-1)

    def check_fits(self) -> None:
        """Refuse swarms that cannot be stacked into the free cells within the flight band."""
        cells = self.ctx.obstacle_grid.cells[0] * self.ctx.obstacle_grid.cells[1]
        free = cells - round(self.ctx.config.obstacle_density * cells)
        levels = -(-self.ctx.drones // max(free, 1))
        low, high = self.ctx.arena.flight_height
        top = low + LEVEL_SPACING * (levels - 1) + LEVEL_JITTER
        if free < 1 or top > high:
            raise ConfigError(
                f"config field 'drones_per_swarm': {self.ctx.drones} drones need {levels} levels in the "
                f"{free} free cells at obstacle_density {self.ctx.config.obstacle_density}, which do not fit "
                f"under the flight band's top ({high} m); use fewer drones or a lower density")

    def __init__(self, ctx: ScenarioContext):
        super().__init__(ctx)
        self.check_fits()

    def start(self, n: int) -> EpisodeStart:
        density = torch.full((n,), self.ctx.config.obstacle_density, device=self.ctx.device)
        occupancy = sample_occupancy(self.ctx.obstacle_grid, density, self.ctx.generator)
        episode = self._episode(self._free_cell_points(occupancy), self._free_cell_points(occupancy))
        episode.occupancy = occupancy
        return episode
