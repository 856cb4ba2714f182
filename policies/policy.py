"""The swarm policy: observation normalisation, the decentralized actor and the critic, in one module.

What a checkpoint holds and an export reads. Observations come in as (E, M, obs), environments by
drones; the actor treats every drone alone (parameters shared across drones), the critic sees the swarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.distributions import Normal

from nanoswarm.policies.actors import make_actor
from nanoswarm.policies.config import PolicyConfig
from nanoswarm.policies.critic import make_critic
from nanoswarm.policies.normalization import RunningNorm
from nanoswarm.sim.observation import ObservationLayout


@dataclass
class ActionSample:
    action: torch.Tensor     # (E, M, 4) raw Gaussian sample; the environment clamps it to [-1, 1]
    log_prob: torch.Tensor   # (E, M)
    value: torch.Tensor      # (E, M)


class SwarmPolicy(nn.Module):
    def __init__(self, layout: ObservationLayout, config: PolicyConfig, hover_action: float = 0.0):
        super().__init__()
        config.validate()
        self.layout = layout
        self.config = config
        self.obs_norm = RunningNorm(layout.size)
        self.actor = make_actor(layout, config, hover_action)
        self.critic = make_critic(layout.size, config)

    def _flat_mean(self, normed: torch.Tensor) -> torch.Tensor:
        e, m, _ = normed.shape
        return self.actor(normed.reshape(e * m, -1)).reshape(e, m, -1)

    def distribution(self, mean: torch.Tensor) -> Normal:
        """The Gaussian over motor commands around `mean` (E, M, 4), with the learned state-independent std."""
        std = self.actor.log_std.clamp_min(self.config.min_log_std).exp()
        # Validating the arguments reads the device (a sync per step on a GPU) and would turn a NaN into a
        # ValueError here; the trainer's rollout check names the NaN with its step and drone instead.
        return Normal(mean, std, validate_args=False)

    def outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean actions (E, M, 4) and values (E, M) for raw observations (E, M, obs): the networks' part of
        `act`, a pure function of tensors that the trainer compiles for its rollouts."""
        normed = self.obs_norm(obs)
        return self._flat_mean(normed), self.critic(normed)

    def act(self, obs: torch.Tensor, outputs: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
            ) -> ActionSample:
        """Sample actions for raw observations (E, M, obs), with their log-probabilities and values.

        `outputs` stands in for `self.outputs` (the trainer passes a compiled one); the sampling stays
        outside it, so compiled and eager rollouts draw the same actions from the same generator state.
        """
        mean, value = (outputs or self.outputs)(obs)
        dist = self.distribution(mean)
        action = dist.sample()
        return ActionSample(action, dist.log_prob(action).sum(-1), value)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.obs_norm(obs))

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probability, entropy and value of taken actions (what the PPO loss needs)."""
        normed = self.obs_norm(obs)
        dist = self.distribution(self._flat_mean(normed))
        return dist.log_prob(action).sum(-1), dist.entropy().sum(-1), self.critic(normed)

    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action flown at evaluation and on board: the mean, already inside the motors' [-1, 1]."""
        return self._flat_mean(self.obs_norm(obs))
