"""The PPO update: clipped policy and value losses, entropy bonus, gradient clipping, minibatch epochs.

One readable function over a flattened rollout. Minibatches are drawn over (step, environment) rows so
each row keeps its whole swarm together, which the swarm-attention critic needs; the actor's
parameters are shared by every drone, so a row contributes M samples to the actor.

With several training processes (`Ranks`), each holds its own share of the batch: gradients are averaged
and advantages standardised over the whole minibatch, so the update equals one over the combined batch.
Diagnostics are summed on the device and read once at the end: no host round-trip per minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from nanoswarm.policies import SwarmPolicy
from nanoswarm.policies.compiled import compile_policy_function
from nanoswarm.training.config import PPOConfig
from nanoswarm.training.distributed import SINGLE, Ranks

DIAGNOSTICS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")


@dataclass
class Batch:
    """Rollout rows flattened to N = T x E, each (N, M, ...)."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    @property
    def rows(self) -> int:
        return self.obs.shape[0]


def minibatch_loss(policy: SwarmPolicy, rows: Batch, cfg: PPOConfig, train_actor: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one minibatch (advantages already standardised) and its diagnostics (DIAGNOSTICS order).

    A pure function of its tensors, so `torch.compile` can fuse the forward and backward passes of both
    networks with the loss (`compiled_loss`).
    """
    log_prob, entropy, value = policy.evaluate(rows.obs, rows.actions)
    adv = rows.advantages
    log_ratio = log_prob - rows.log_probs
    ratio = log_ratio.exp()
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()

    old_value, target = rows.values, rows.returns
    value_loss = (value - target).square()
    if cfg.value_clip > 0:
        clipped = old_value + (value - old_value).clamp(-cfg.value_clip, cfg.value_clip)
        value_loss = torch.max(value_loss, (clipped - target).square())
    value_loss = 0.5 * value_loss.mean()
    entropy_mean = entropy.mean()

    loss = cfg.value_coef * value_loss
    if train_actor:
        loss = loss + policy_loss - cfg.entropy * entropy_mean
    with torch.no_grad():
        diagnostics = torch.stack((policy_loss, value_loss, entropy_mean, ((ratio - 1) - log_ratio).mean(),
                                   ((ratio - 1).abs() > cfg.clip).float().mean()))
    return loss, diagnostics


LossFn = Callable[[SwarmPolicy, Batch, PPOConfig, bool], tuple[torch.Tensor, torch.Tensor]]


def compiled_loss() -> LossFn:
    """`minibatch_loss` through torch.compile: a swarm8 update ran 1.26x faster on the 2-core CPU (side by side
    with the eager loss, BENCHMARKS.md), for about a minute of compilation when a run starts."""
    return compile_policy_function(minibatch_loss)


def ppo_update(policy: SwarmPolicy, optimizer: torch.optim.Optimizer, batch: Batch, cfg: PPOConfig,
               generator: torch.Generator | None = None, train_actor: bool = True,
               ranks: Ranks = SINGLE, loss_fn: LossFn = minibatch_loss) -> dict[str, float]:
    """Run `cfg.epochs` passes of `cfg.minibatches` minibatches; return mean losses and diagnostics.

    With `train_actor` False only the critic learns (the actor gets no gradient): a warm-up for a
    critic that starts cold under an actor that already flies, whose first advantages are noise.
    """
    sums = torch.zeros(len(DIAGNOSTICS) + 1, dtype=torch.float64, device=batch.obs.device)
    updates = 0
    size = batch.rows // cfg.minibatches
    for _ in range(cfg.epochs):
        order = torch.randperm(batch.rows, generator=generator, device=batch.obs.device)
        for k in range(cfg.minibatches):
            rows = order[k * size:(k + 1) * size]
            minibatch = Batch(obs=batch.obs[rows], actions=batch.actions[rows], log_probs=batch.log_probs[rows],
                              values=batch.values[rows], advantages=ranks.standardize(batch.advantages[rows]),
                              returns=batch.returns[rows])
            loss, diagnostics = loss_fn(policy, minibatch, cfg, train_actor)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ranks.average_gradients(policy.parameters())
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            sums[:-1] += diagnostics
            updates += 1
    with torch.no_grad():
        residual = (batch.returns - batch.values).var()
        sums[-1] = updates * (1 - residual / batch.returns.var().clamp_min(1e-8))
    means = (ranks.sum(sums) / (updates * ranks.world_size)).tolist()
    return dict(zip((*DIAGNOSTICS, "explained_variance"), means))
