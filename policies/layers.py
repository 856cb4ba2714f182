"""Building blocks shared by the actors and the critic."""

from __future__ import annotations

import math

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(sizes: list[int], activation: str, last_activation: bool = True) -> nn.Sequential:
    """Linear layers of the given widths, each followed by the activation (the last one optionally)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if last_activation or i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Attention(nn.Module):
    """Single-head scaled dot-product attention: queries (B, Q, d) attend over tokens (B, T, d).

    Written with matmul and softmax only, the ops every exporter and the onboard C generator support.
    The weighted sum is permutation-invariant in the tokens, which is why neighbour order never matters.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        scores = torch.matmul(self.query(queries) * self.scale, self.key(tokens).transpose(-1, -2))
        return torch.matmul(torch.softmax(scores, dim=-1), self.value(tokens))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
