"""Random draws of one control step: one block of uniforms, turned into normals inside the step.

The environment draws a single (E, M, R) block of uniforms from its seeded generator per step. The
compiled step turns them into normals with the Box-Muller transform: drawing uniforms is about twice
as fast as drawing normals on the CPU, and the transform fuses into the step's loops. One block also
keeps the order of draws, hence the rollout for a seed, independent of which noise sources are on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DrawLayout:
    """How many normals and uniforms each drone needs per control step."""

    motor_normals: int     # substeps x 4 for the motor OU noise, or 0
    sensing_normals: int   # 12 (position, velocity, attitude, rates) or 0
    kick_uniforms: int     # 4 for collision spin kicks, or 0

    @property
    def normals(self) -> int:
        return self.motor_normals + self.sensing_normals

    @property
    def size(self) -> int:
        """Uniforms per drone: normals come in Box-Muller pairs."""
        return 2 * math.ceil(self.normals / 2) + self.kick_uniforms


def box_muller(uniforms: torch.Tensor) -> torch.Tensor:
    """Standard normals (..., 2n) from uniforms in [0, 1) (..., 2n)."""
    u1, u2 = uniforms.chunk(2, dim=-1)
    radius = torch.sqrt(-2.0 * torch.log1p(-u1))          # 1 - u1 lies in (0, 1]
    angle = (2.0 * math.pi) * u2
    return torch.cat((radius * torch.cos(angle), radius * torch.sin(angle)), dim=-1)


def split_draws(uniforms: torch.Tensor, layout: DrawLayout
                ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Motor normals (E, M, substeps, 4), sensing normals (E, M, 4, 3) and kick uniforms (E, M, 4);
    None for each source that is off."""
    paired = layout.size - layout.kick_uniforms
    normals = box_muller(uniforms[..., :paired]) if paired else None
    lead = uniforms.shape[:-1]
    motor = normals[..., :layout.motor_normals].reshape(*lead, -1, 4) if layout.motor_normals else None
    sensing = (normals[..., layout.motor_normals:layout.normals].reshape(*lead, 4, 3)
               if layout.sensing_normals else None)
    kick = uniforms[..., paired:] if layout.kick_uniforms else None
    return motor, sensing, kick
