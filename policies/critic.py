"""Critics: they never fly, so they may see more than the actor does.

`SwarmCritic` lets every drone's value attend over the embeddings of all drones of its swarm, which
gives it the global picture (who is about to collide with whom beyond the K nearest, how far the whole
swarm is from its formation) that makes advantages less noisy. `LocalCritic` sees only the drone's own
observation, like the actor (quad-swarm-rl's choice).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nanoswarm.policies.config import PolicyConfig
from nanoswarm.policies.layers import Attention, mlp


class LocalCritic(nn.Module):
    def __init__(self, obs_size: int, config: PolicyConfig):
        super().__init__()
        h = config.critic_hidden
        self.net = mlp([obs_size, h, h, 1], config.activation, last_activation=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (E, M, obs) normalised -> values (E, M)."""
        return self.net(obs).squeeze(-1)


class SwarmCritic(nn.Module):
    def __init__(self, obs_size: int, config: PolicyConfig):
        super().__init__()
        h = config.critic_hidden
        self.encoder = mlp([obs_size, h, h], config.activation)
        self.attention = Attention(h)
        self.head = mlp([2 * h, h, 1], config.activation, last_activation=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (E, M, obs) normalised, all drones of each swarm -> values (E, M).

        The head reads [own embedding, value projection of the attention's pooled embeddings]. Its first
        layer is linear, and so is the value projection, so the two multiply into one weight over
        [own, pooled] formed once per call (exact): each drone skips the value projection, a sixth of the
        critic's products. The single output is a product and a sum, which fuse with the activation before
        them; as a one-column matrix product it ran at 3-4 GFLOP/s.
        """
        mine = self.encoder(obs)
        pooled = self.attention.pool(mine, mine)
        (first, activation, last), value, h = self.head, self.attention.value, mine.shape[-1]
        on_swarm = first.weight[:, h:]
        weight = torch.cat((first.weight[:, :h], on_swarm @ value.weight), dim=1)
        hidden = activation(F.linear(torch.cat((mine, pooled), dim=-1), weight, first.bias + on_swarm @ value.bias))
        return (hidden * last.weight[0]).sum(-1) + last.bias[0]


def make_critic(obs_size: int, config: PolicyConfig) -> nn.Module:
    return SwarmCritic(obs_size, config) if config.critic == "swarm_attention" else LocalCritic(obs_size, config)
