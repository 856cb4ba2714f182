"""Running observation normalisation, saved with the policy and folded into exported models.

Observations mix metres, metres per second, rotation entries and radians per second; a network learns
faster when each input has zero mean and unit variance. The statistics are buffers of the module, so they
travel with every checkpoint, and the export folds them into the first layer.
"""

from __future__ import annotations

import torch
from torch import nn


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean and biased variance per feature of the rows of `x` (..., size), in float64, and the row count."""
    flat = x.reshape(-1, x.shape[-1]).to(torch.float64)
    return flat.mean(0), flat.var(0, unbiased=False), float(flat.shape[0])


class RunningNorm(nn.Module):
    """Per-feature running mean and variance (Chan et al.'s parallel update), applied as (x - mean) / std.

    `var_floor` keeps features that never vary in training (the obstacle grid of an obstacle-free run)
    from being multiplied by a huge factor when they do vary later; `clip` bounds the normalised values.
    """

    def __init__(self, size: int, clip: float = 10.0, var_floor: float = 1e-4):
        super().__init__()
        self.clip = clip
        self.var_floor = var_floor
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch (..., size) into the statistics."""
        self.merge(*batch_moments(x))

    @torch.no_grad()
    def merge(self, batch_mean: torch.Tensor, batch_var: torch.Tensor, n: float) -> None:
        """Combine statistics of n samples (also how ranks or runs are reduced)."""
        if n == 0:
            return
        total = self.count + n
        delta = batch_mean - self.mean.to(torch.float64)
        new_mean = self.mean + (delta * n / total).to(self.mean.dtype)
        m2 = self.var.to(torch.float64) * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean.copy_(new_mean)
        self.var.copy_((m2 / total).to(self.var.dtype))
        self.count.copy_(total)

    def scale(self) -> torch.Tensor:
        """1 / std per feature (what an exporter multiplies into the first layer)."""
        return torch.rsqrt(self.var.clamp_min(self.var_floor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) * self.scale()).clamp(-self.clip, self.clip)
