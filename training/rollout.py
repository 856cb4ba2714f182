"""Rollout storage and generalised advantage estimation, batched over environments and drones.

The only Python loop is over the T steps of a rollout (GAE is a backward recursion in time); every
step handles all E x M drones at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    """T control steps of E environments of M drones."""

    obs: torch.Tensor        # (T, E, M, obs)
    actions: torch.Tensor    # (T, E, M, 4)
    log_probs: torch.Tensor  # (T, E, M)
    values: torch.Tensor     # (T, E, M)
    rewards: torch.Tensor    # (T, E, M), truncation bootstraps already added
    dones: torch.Tensor      # (T, E) float: the episode ended after this step
    discounted: torch.Tensor  # (T, E, M) running discounted return after each step (reward normalisation)

    @staticmethod
    def empty(steps: int, envs: int, drones: int, obs_size: int, device: torch.device) -> "Rollout":
        def z(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, device=device)
        return Rollout(obs=z(steps, envs, drones, obs_size), actions=z(steps, envs, drones, 4),
                       log_probs=z(steps, envs, drones), values=z(steps, envs, drones),
                       rewards=z(steps, envs, drones), dones=z(steps, envs), discounted=z(steps, envs, drones))


def generalized_advantages(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                           last_value: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) advantages and returns, (T, E, M) each.

    Episodes here end only by their time limit, which is a truncation, not a terminal state: the caller
    adds gamma * V(final observation) to the last reward of the episode, and the recursion then stops
    at the boundary (`dones`) so no value leaks from the next episode.
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        carry = (1.0 - dones[t]).unsqueeze(-1)
        delta = rewards[t] + gamma * next_value * carry - values[t]
        running = delta + gamma * lam * carry * running
        advantages[t] = running
    return advantages, advantages + values
