"""Decentralized actors: each drone's own observation in, a Gaussian over its 4 motor commands out.

All three kinds share the interface (`forward(obs) -> mean`, a state-independent `log_std`) and the
head, and differ only in how they summarise the neighbours:
- `AttentionActor`: self, neighbour and obstacle encoders; the self embedding attends over the
  neighbour embeddings; the neighbour and obstacle summaries then attend over each other (the
  structure of quad-swarm-rl's ICRA 2024 actor, at configurable sizes);
- `DeepSetsActor`: the mean of the neighbour embeddings instead of attention;
- `MlpActor`: the flat observation straight into the head (depends on neighbour order: a baseline).
Inputs are normalised observations (batch, layout.size).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nanoswarm.policies.config import PolicyConfig
from nanoswarm.policies.layers import Attention, mlp
from nanoswarm.sim.observation import ObservationLayout

MOTORS = 4
HEAD_INIT_GAIN = 0.01  # a near-constant initial mean: every drone starts by commanding hover thrust


class Actor(nn.Module):
    """Base: a feature extractor (per kind) followed by the shared head."""

    def __init__(self, layout: ObservationLayout, config: PolicyConfig, feature_size: int, hover_action: float):
        super().__init__()
        self.layout = layout
        slices = layout.slices
        self.self_slice, self.neighbor_slice, self.obstacle_slice = (
            slices["self"], slices["neighbors"], slices["obstacles"])
        self.head = mlp([feature_size, *config.head], config.activation)
        self.mean = nn.Linear(config.head[-1] if config.head else feature_size, MOTORS)
        with torch.no_grad():
            self.mean.weight.mul_(HEAD_INIT_GAIN)
            self.mean.bias.fill_(math.atanh(max(-0.99, min(0.99, hover_action))))
        self.log_std = nn.Parameter(torch.full((MOTORS,), config.init_log_std))

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Mean motor commands (batch, 4) in (-1, 1).

        The tanh keeps the mean inside the motors' range. With a linear mean, a policy that once pushed
        a motor past full thrust had every sample clipped to the same command and no gradient left to
        pull it back: single drones learned to pin themselves to the ceiling at full thrust.
        """
        return torch.tanh(self.mean(self.head(self.features(obs))))

    def neighbors(self, obs: torch.Tensor) -> torch.Tensor:
        """The neighbour block as (batch, K, 6) tokens."""
        return obs[:, self.neighbor_slice].reshape(obs.shape[0], self.layout.num_neighbors,
                                                   self.layout.neighbor_size)


class EncoderActor(Actor):
    """Actors that embed self, each neighbour and the obstacle grid separately, then summarise."""

    def __init__(self, layout: ObservationLayout, config: PolicyConfig, hover_action: float):
        h, act = config.hidden, config.activation
        super().__init__(layout, config, 3 * h, hover_action)
        self.self_encoder = mlp([layout.self_size, h, h], act)
        self.neighbor_encoder = mlp([layout.neighbor_size, h, h], act)
        self.obstacle_encoder = mlp([self.obstacle_slice.stop - self.obstacle_slice.start, h, h], act)

    def summarise_neighbors(self, me: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self embedding, neighbour summary (zeros for a lone drone) and obstacle embedding, (B, h) each."""
        me = self.self_encoder(obs[:, self.self_slice])
        if self.layout.num_neighbors > 0:
            neighbors = self.summarise_neighbors(me, self.neighbor_encoder(self.neighbors(obs)))
        else:
            neighbors = torch.zeros_like(me)
        return me, neighbors, self.obstacle_encoder(obs[:, self.obstacle_slice])


class AttentionActor(EncoderActor):
    def __init__(self, layout: ObservationLayout, config: PolicyConfig, hover_action: float):
        super().__init__(layout, config, hover_action)
        self.neighbor_attention = Attention(config.hidden)
        self.summary_attention = Attention(config.hidden)

    def summarise_neighbors(self, me: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.neighbor_attention(me.unsqueeze(1), tokens).squeeze(1)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        me, neighbors, obstacles = self.encode(obs)
        summaries = torch.stack((neighbors, obstacles), dim=1)
        mixed = summaries + self.summary_attention(summaries, summaries)
        return torch.cat((me, mixed.flatten(1)), dim=1)


class DeepSetsActor(EncoderActor):
    def summarise_neighbors(self, me: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.encode(obs), dim=1)


class MlpActor(Actor):
    def __init__(self, layout: ObservationLayout, config: PolicyConfig, hover_action: float):
        super().__init__(layout, config, layout.size, hover_action)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return obs


ACTORS: dict[str, type[Actor]] = {"attention": AttentionActor, "deepsets": DeepSetsActor, "mlp": MlpActor}


def make_actor(layout: ObservationLayout, config: PolicyConfig, hover_action: float) -> Actor:
    return ACTORS[config.actor](layout, config, hover_action)
