"""Building blocks shared by the actors and the critic."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(sizes: list[int], activation: str, last_activation: bool = True) -> nn.Sequential:
    """Linear layers of the given widths, each followed by the activation (the last one optionally)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(widening_linear(n_in, n_out) if n_in < n_out else nn.Linear(n_in, n_out))
        if last_activation or i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def widening_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear layer with fewer inputs than outputs, its weight stored transposed in memory.

    Values, shape and state dict are those of `nn.Linear`; only the memory order differs, and autograd follows
    it: the weight gradient is computed as x^T g (few rows out, a long sum) instead of (g^T x)^T. MKL runs
    the first 2 to 5 times faster for the encoders' first layers: 2.7 against 10.4 ms for 6 neighbour
    features over 98,304 tokens on the 2-core machine (BENCHMARKS.md, training throughput).
    """
    layer = nn.Linear(n_in, n_out)
    layer.weight = nn.Parameter(layer.weight.detach().t().contiguous().t())
    return layer


class Attention(nn.Module):
    """Single-head scaled dot-product attention: queries (B, Q, d) attend over tokens (B, T, d).

    Written with matmul, products, sums and softmax only, the ops every exporter and the onboard C
    generator support. The weighted sum is permutation-invariant in the tokens, which is why neighbour
    order never matters.

    Exact rewrites of the textbook form save projections:
    - the key projection moves onto the query: q . (W_k t + b_k) = (W_k^T q) . t + q . b_k, and the last
      term is the same for every token, so it cancels in the softmax (which is why the key has no bias);
    - the query and key projections then multiply into one d x d matrix, W_k^T W_q (and the bias W_k^T b_q),
      formed once per call: each query costs one product instead of two;
    - the value projection moves after the weighted sum, because the weights sum to one.
    A drone attending over 6 neighbours projects 2 vectors instead of 13.
    The dot products are broadcast products and sums rather than batched matmuls: over thousands of
    1 x 6 or 2 x 2 score matrices a batched matmul spends its time on per-matrix overhead, while
    torch.compile fuses products and sums into one loop (BENCHMARKS.md, training throughput).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.value(self.pool(queries, tokens))

    def pool(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The attention-weighted sums of the tokens (B, Q, d), before the value projection: for a caller
        that multiplies the value projection into a linear layer of its own (`SwarmCritic`)."""
        keyed_queries = F.linear(queries, self.key.weight.t() @ self.query.weight * self.scale,
                                 self.query.bias @ self.key.weight * self.scale)              # (B, Q, d)
        scores = (keyed_queries.unsqueeze(-2) * tokens.unsqueeze(-3)).sum(-1)                 # (B, Q, T)
        weights = torch.softmax(scores, dim=-1).unsqueeze(-1)                                # (B, Q, T, 1)
        return (weights * tokens.unsqueeze(-3)).sum(-2)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
