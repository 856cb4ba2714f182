"""Arenas: the room the swarm flies in and the grid its columns stand on (`hardware/arenas/*.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoswarm.config import require
from nanoswarm.hardware import load_hardware


@dataclass(frozen=True)
class Arena:
    """A box room centred on x = y = 0 with its floor at z = 0, and a column grid in its middle."""

    name: str
    room: tuple[float, float, float]
    obstacle_cell: float
    obstacle_cells: tuple[int, int]
    flight_height: tuple[float, float]
    wall_margin: float = 0.5          # m, starts and goals keep this far from the walls

    def validate(self) -> None:
        require(all(r > 0 for r in self.room), "room", f"dimensions must be positive, got {self.room}")
        require(self.obstacle_cell > 0, "obstacle_cell", "must be positive (m)")
        require(all(c >= 1 for c in self.obstacle_cells), "obstacle_cells", "need at least one cell per axis")
        for axis in range(2):
            require(self.obstacle_cells[axis] * self.obstacle_cell <= self.room[axis], "obstacle_cells",
                    "the column grid must fit inside the room")
        low, high = self.flight_height
        require(0 < low < high <= self.room[2], "flight_height", f"must satisfy 0 < low < high <= ceiling, got {[low, high]}")
        require(0 <= 2 * self.wall_margin < min(self.room[:2]), "wall_margin", "must leave room to fly")

    def flight_box(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Corners (3,) of the box in which scenarios place starts and goals."""
        hx, hy = 0.5 * self.room[0] - self.wall_margin, 0.5 * self.room[1] - self.wall_margin
        low = torch.tensor((-hx, -hy, self.flight_height[0]), device=device)
        high = torch.tensor((hx, hy, self.flight_height[1]), device=device)
        return low, high


def load_arena(name_or_path: str) -> Arena:
    return load_hardware(Arena, "arenas", name_or_path, "arena")
