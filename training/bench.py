"""`nanoswarm bench train`: end-to-end training throughput (simulation, rollout, PPO update).

What a user waits for is the whole loop, not the simulator alone: agent-steps per second of wall time
over complete updates (rollout of every environment, GAE, all PPO epochs and minibatches). Medians over
repeats, after a warm-up update that pays for compilation.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

import torch

from nanoswarm.policies import count_parameters
from nanoswarm.sim.bench import device_name
from nanoswarm.training.config import TrainConfig
from nanoswarm.training.train import Trainer


@dataclass
class TrainBenchResult:
    config: str
    device: str
    device_name: str
    num_envs: int
    drones_per_swarm: int
    actor: str
    actor_parameters: int
    critic_parameters: int
    rollout_steps: int
    epochs: int
    minibatches: int
    updates_per_repeat: int
    repeats: int
    agent_steps_per_s: float            # median over repeats
    agent_steps_per_s_all: list[float]
    rollout_fraction: float             # share of the wall time spent collecting (simulation + acting)
    torch_version: str
    threads: int


def bench_train(config: TrainConfig, name: str, updates: int = 3, repeats: int = 3) -> TrainBenchResult:
    trainer = Trainer(dataclasses.replace(config, eval=dataclasses.replace(config.eval, every_s=0)))
    trainer.train_step()  # warm-up: compilation and allocator
    rates, fractions = [], []
    steps = config.ppo.rollout_steps * trainer.env.num_envs * trainer.env.drones
    for _ in range(repeats):
        start = time.perf_counter()
        spent_collecting = 0.0
        for _ in range(updates):
            record = trainer.train_step()
            spent_collecting += record["rollout_fraction"] * steps / record["agent_steps_per_s"]
        wall = time.perf_counter() - start
        rates.append(updates * steps / wall)
        fractions.append(spent_collecting / wall)
    policy = trainer.policy
    return TrainBenchResult(
        config=name, device=str(trainer.env.device), device_name=device_name(trainer.env.device),
        num_envs=trainer.env.num_envs, drones_per_swarm=trainer.env.drones, actor=config.policy.actor,
        actor_parameters=count_parameters(policy.actor), critic_parameters=count_parameters(policy.critic),
        rollout_steps=config.ppo.rollout_steps, epochs=config.ppo.epochs, minibatches=config.ppo.minibatches,
        updates_per_repeat=updates, repeats=repeats, agent_steps_per_s=statistics.median(rates),
        agent_steps_per_s_all=rates, rollout_fraction=statistics.median(fractions),
        torch_version=torch.__version__, threads=torch.get_num_threads())
