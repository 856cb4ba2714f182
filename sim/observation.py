"""The observation layout: the one definition of what a drone's policy sees, and its builder.

The simulator builds observations with `build_observation` and policies slice them with
`ObservationLayout.slices`. Everything downstream (checkpoints, exported models, the onboard code) is
to record `to_dict()` and rebuild the layout with `from_dict`, which refuses a layout that differs
from this definition, so a mismatch is caught on load rather than in flight.

Per drone, in order:
- self (19): p - goal (3), velocity (3), rotation matrix body-to-world, row-major (9), body rates (3),
  height above the floor (1);
- neighbours (6 K): for each of the K nearest drones, nearest first: relative position p_j - p_i (3) and
  relative velocity v_j - v_i (3), in the world frame;
- obstacles (9): the signed distance to the nearest column surface at 3 x 3 points 0.1 m apart around
  the drone, clipped to the sensing range (see `obstacles.GRID_OFFSETS` for the point order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

SCHEMA_VERSION = 1

SELF_FIELDS: tuple[tuple[str, int], ...] = (
    ("rel_goal", 3), ("vel", 3), ("rot", 9), ("omega", 3), ("height", 1))
NEIGHBOR_FIELDS: tuple[tuple[str, int], ...] = (("rel_pos", 3), ("rel_vel", 3))
OBSTACLE_POINTS = 9


@dataclass(frozen=True)
class ObservationLayout:
    """Sizes and named slices of the flat per-drone observation vector."""

    num_neighbors: int

    @property
    def self_size(self) -> int:
        return sum(n for _, n in SELF_FIELDS)

    @property
    def neighbor_size(self) -> int:
        return sum(n for _, n in NEIGHBOR_FIELDS)

    @property
    def size(self) -> int:
        return self.self_size + self.num_neighbors * self.neighbor_size + OBSTACLE_POINTS

    @property
    def slices(self) -> dict[str, slice]:
        """Named slices: the three blocks ('self', 'neighbors', 'obstacles') and each self field."""
        out: dict[str, slice] = {}
        start = 0
        for name, n in SELF_FIELDS:
            out[f"self.{name}"] = slice(start, start + n)
            start += n
        out["self"] = slice(0, start)
        nb = self.num_neighbors * self.neighbor_size
        out["neighbors"] = slice(start, start + nb)
        out["obstacles"] = slice(start + nb, start + nb + OBSTACLE_POINTS)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-data description for checkpoints, ONNX metadata and C headers."""
        return {
            "schema_version": SCHEMA_VERSION,
            "num_neighbors": self.num_neighbors,
            "size": self.size,
            "self_fields": [list(f) for f in SELF_FIELDS],
            "neighbor_fields": [list(f) for f in NEIGHBOR_FIELDS],
            "obstacle_points": OBSTACLE_POINTS,
            "slices": {k: [s.start, s.stop] for k, s in self.slices.items()},
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ObservationLayout":
        layout = ObservationLayout(num_neighbors=int(data["num_neighbors"]))
        if layout.to_dict() != data:
            raise ValueError(
                f"observation layout {data} differs from this version's definition {layout.to_dict()}; "
                "re-export or retrain with this version of nanoswarm")
        return layout


def build_observation(
    rel_goal: torch.Tensor, vel: torch.Tensor, rot: torch.Tensor, omega: torch.Tensor, height: torch.Tensor,
    neighbor_rel_pos: torch.Tensor, neighbor_rel_vel: torch.Tensor, obstacle_grid: torch.Tensor,
) -> torch.Tensor:
    """Concatenate the blocks of the layout: inputs (..., n) or (..., K, 3) or (..., 3, 3); out (..., size)."""
    lead = rel_goal.shape[:-1]
    neighbors = torch.cat((neighbor_rel_pos, neighbor_rel_vel), dim=-1).reshape(*lead, -1)
    return torch.cat((rel_goal, vel, rot.reshape(*lead, 9), omega, height, neighbors, obstacle_grid), dim=-1)
