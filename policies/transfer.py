"""Start a policy from one trained for another swarm size or neighbour count.

The attention and deep-sets actors share their weights across neighbours, so everything a policy learned
about flying (self encoder, obstacle encoder, head) keeps its meaning when K changes: a lone-drone policy
that already flies is a far better start for a swarm than random weights. Only tensors whose name and
shape match are copied; normalisation statistics are copied block by block (self and obstacles always,
neighbours slot by slot where the source has them) with the source's sample count, so the inputs keep
the meaning the transferred weights were trained on. (Letting the new environment's statistics take over
quickly, by capping the count, shifted every input at once and broke the transferred policy.) Neighbour
slots the source never saw start at mean 0 and unit variance: relative positions and velocities in
metres and metres per second are already of order one.
"""

from __future__ import annotations

import torch

from nanoswarm.policies.policy import SwarmPolicy


@torch.no_grad()
def transfer_weights(source: SwarmPolicy, target: SwarmPolicy) -> list[str]:
    """Copy what fits from `source` into `target`; return the names of target tensors left as they were."""
    src = dict(source.named_parameters())
    left: list[str] = []
    for name, param in target.named_parameters():
        if name in src and src[name].shape == param.shape:
            param.copy_(src[name])
        else:
            left.append(name)
    s_slices, t_slices = source.layout.slices, target.layout.slices
    for block in ("self", "obstacles"):
        for stat in ("mean", "var"):
            getattr(target.obs_norm, stat)[t_slices[block]] = getattr(source.obs_norm, stat)[s_slices[block]]
    width = target.layout.neighbor_size
    shared = min(source.layout.num_neighbors, target.layout.num_neighbors) * width
    for stat in ("mean", "var"):
        src_block = getattr(source.obs_norm, stat)[s_slices["neighbors"]]
        getattr(target.obs_norm, stat)[t_slices["neighbors"].start:t_slices["neighbors"].start + shared] = src_block[:shared]
    if target.layout.num_neighbors > source.layout.num_neighbors:
        left.append("obs_norm (neighbour slots beyond the source's)")
    target.obs_norm.count.fill_(float(source.obs_norm.count))
    return left
