"""DAgger (Ross, Gordon and Bagnell, 2011): a student learns an expert's actions on the states the
student itself visits.

Behaviour cloning on the expert's own flights fails in the air: the student's small errors take it to
states the expert never visited, where it was never taught. Here each iteration flies every environment
with a mixture (the expert's action with probability beta, which decays to zero, else the student's),
labels every visited observation with the expert's action, adds them to an aggregated dataset and fits
the student's actor to all of it. Two users: distillation (a trained policy teaches a tiny student)
and the kickstart of PPO (the geometric controller teaches an untrained policy to fly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from nanoswarm.config import require
from nanoswarm.policies import SwarmPolicy
from nanoswarm.policies.compiled import compile_policy_function
from nanoswarm.sim.env import SwarmEnv


LossFn = Callable[[SwarmPolicy, torch.Tensor, torch.Tensor], torch.Tensor]


class Expert(Protocol):
    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions (E, M, 4) in [-1, 1] for raw observations (E, M, obs)."""


@dataclass
class DaggerConfig:
    iterations: int = 20
    num_envs: int = 256
    rollout_steps: int = 150           # control steps flown per iteration (1.5 s at 100 Hz)
    beta_decay: float = 0.5            # expert-action probability: 1, then times this every iteration
    buffer_size: int = 2_000_000       # aggregated observations kept (the oldest are dropped)
    epochs: int = 2                    # passes over the aggregated data per iteration
    batch_size: int = 4096
    learning_rate: float = 3e-3
    lr_final_fraction: float = 0.05    # cosine decay over the iterations

    def validate(self) -> None:
        require(self.iterations >= 0 and self.num_envs >= 1 and self.rollout_steps >= 1, "iterations",
                "iterations >= 0, num_envs and rollout_steps >= 1")
        require(0.0 <= self.beta_decay < 1.0, "beta_decay", "must be within [0, 1) so the student takes over")
        require(self.buffer_size >= self.batch_size >= 1, "buffer_size", "must be at least batch_size (>= 1)")
        require(self.epochs >= 1 and self.learning_rate > 0, "epochs", "epochs >= 1 and a positive learning_rate")
        require(0 < self.lr_final_fraction <= 1, "lr_final_fraction", "must be within (0, 1]")


class AggregatedData:
    """A ring buffer of (observation, expert action) rows: DAgger's growing dataset, bounded."""

    def __init__(self, capacity: int, obs_size: int):
        self.obs = torch.empty(capacity, obs_size)
        self.target = torch.empty(capacity, 4)
        self.size = 0
        self.cursor = 0

    def add(self, obs: torch.Tensor, target: torch.Tensor) -> None:
        n = min(obs.shape[0], self.obs.shape[0])
        rows = (self.cursor + torch.arange(n)) % self.obs.shape[0]
        self.obs[rows], self.target[rows] = obs[-n:], target[-n:]
        self.cursor = int(rows[-1]) + 1
        self.size = min(self.size + n, self.obs.shape[0])


def fly_and_label(env: SwarmEnv, obs: torch.Tensor, expert: Expert, student: SwarmPolicy, beta: float,
                  steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fly `steps` control steps with the expert-or-student mixture (one coin per environment and step);
    returns every visited observation with the expert's label, and the last observation."""
    seen, labels = [], []
    with torch.inference_mode():
        for _ in range(steps):
            target = expert.deterministic_action(obs)
            flown = student.deterministic_action(obs)
            use_expert = torch.rand(obs.shape[0], 1, 1, generator=generator) < beta
            seen.append(obs.reshape(-1, obs.shape[-1]))
            labels.append(target.reshape(-1, 4))
            obs = env.step(torch.where(use_expert, target, flown)).observation
    return torch.cat(seen), torch.cat(labels), obs


def imitation_loss(student: SwarmPolicy, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the student's action against the expert's labels (raw observations in)."""
    return (student.actor(student.obs_norm(obs)) - target).square().mean()


def fit(student: SwarmPolicy, data: AggregatedData, optimizer: torch.optim.Optimizer, epochs: int,
        batch_size: int, generator: torch.Generator, loss_fn: LossFn = imitation_loss) -> float:
    """Minimise the squared error of the student's action on the aggregated data; returns the last epoch's mean.

    Whole batches only: the data grows every iteration, and a last batch of a new size each time would
    recompile a compiled `loss_fn` (the rows left out differ from epoch to epoch).
    """
    loss_sum = 0.0
    whole = max(batch_size, data.size - data.size % batch_size)
    for _ in range(epochs):
        order = torch.randperm(data.size, generator=generator)[:whole]
        loss_sum, batches = 0.0, 0
        for rows in order.split(batch_size):
            loss = loss_fn(student, data.obs[rows], data.target[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, batches = loss_sum + loss.item(), batches + 1
        loss_sum /= batches
    return loss_sum


def run_dagger(expert: Expert, student: SwarmPolicy, env: SwarmEnv, config: DaggerConfig, seed: int,
               update_norm: bool, log: Callable[[str], None], compile: bool = False) -> list[dict[str, float]]:
    """Teach `student` (its actor, and its observation normalisation when `update_norm`) to act as `expert`
    in `env`; returns one record per iteration. `compile` fits through torch.compile (BENCHMARKS.md)."""
    generator = torch.Generator().manual_seed(seed)
    obs = env.reset(seed)
    env.stagger(generator)
    dataset = AggregatedData(config.buffer_size, env.obs_size)
    optimizer = torch.optim.Adam(student.actor.parameters(), lr=config.learning_rate, fused=True)
    loss_fn = compile_policy_function(imitation_loss) if compile else imitation_loss
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, config.iterations), eta_min=config.learning_rate * config.lr_final_fraction)
    history = []
    for iteration in range(config.iterations):
        beta = config.beta_decay ** iteration
        seen, labels, obs = fly_and_label(env, obs, expert, student, beta, config.rollout_steps, generator)
        if update_norm:
            student.obs_norm.update(seen)
        dataset.add(seen, labels)
        loss = fit(student, dataset, optimizer, config.epochs, config.batch_size, generator, loss_fn)
        schedule.step()
        history.append({"iteration": iteration, "beta": beta, "loss": loss, "rows": dataset.size})
        log(f"DAgger iteration {iteration + 1}/{config.iterations}: beta {beta:.3f}, imitation loss {loss:.2e}, "
            f"{dataset.size:,} labelled observations")
    return history
