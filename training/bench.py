"""`nanoswarm bench train` and `bench scaling`: end-to-end training throughput (simulation, rollout, PPO
update), in one process or data-parallel over several.

What a user waits for is the whole loop, not the simulator alone: agent-steps per second of wall time
over complete updates (rollout of every environment, GAE, all PPO epochs and minibatches). Medians over
repeats, after a warm-up update that pays for compilation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from nanoswarm.config import to_mapping

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


def measured_config(config: TrainConfig) -> TrainConfig:
    """`config` as the benchmarks train it: from scratch (no kickstart, no evaluation, no checkpoints) and
    with full PPO updates from the first one on. A critic warm-up would update the critic alone, which
    costs a fraction of a full update and would flatter the figure."""
    return dataclasses.replace(
        config, eval=dataclasses.replace(config.eval, every_s=0), checkpoint_every_s=1e9,
        kickstart=dataclasses.replace(config.kickstart, iterations=0),
        ppo=dataclasses.replace(config.ppo, critic_warmup_updates=0))


def bench_train(config: TrainConfig, name: str, updates: int = 3, repeats: int = 3) -> TrainBenchResult:
    trainer = Trainer(measured_config(config))
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


@dataclass
class ScalingResult:
    config: str
    device: str
    num_envs_per_process: int
    drones_per_swarm: int
    updates: int                         # measured updates per run, after one warm-up update
    repeats: int
    threads_per_process: int
    agent_steps_per_s: dict[int, float]  # processes -> median over repeats of the per-run median
    all_runs: dict[int, list[float]]
    speedup: dict[int, float]            # over the first process count, from the medians
    torch_version: str


def bench_scaling(config: TrainConfig, name: str, nprocs: tuple[int, ...] = (1, 2), updates: int = 3,
                  repeats: int = 3, workdir: Path | None = None) -> ScalingResult:
    """Training throughput of the real `nanoswarm train --nproc N` for each N, runs interleaved.

    Each run trains `updates + 1` updates from scratch (no kickstart, no evaluation) and reports the median
    agent-steps/s of its updates after the first; N is alternated run by run, so a background load hits
    every N alike. Each process gets one thread (torchrun's default), so N processes use N cores.
    """
    from nanoswarm.training.distributed import launch

    bench_config = measured_config(config)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="nanoswarm_scaling_"))
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(to_mapping(bench_config), sort_keys=False))
    steps_per_process = config.ppo.rollout_steps * config.env.num_envs * config.env.drones_per_swarm
    runs: dict[int, list[float]] = {n: [] for n in nprocs}
    for repeat in range(repeats):
        for n in nprocs:
            out = workdir / f"n{n}_r{repeat}"
            total = (updates + 1) * n * steps_per_process
            code = launch(n, ["train", str(config_path), "--out", str(out), "--total-steps", str(total)])
            if code != 0:
                raise RuntimeError(f"the {n}-process benchmark run failed (exit code {code}); its message is above")
            rates = [json.loads(line)["agent_steps_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()]
            runs[n].append(statistics.median(rates[1:]))
    medians = {n: statistics.median(r) for n, r in runs.items()}
    return ScalingResult(
        config=name, device=config.env.device, num_envs_per_process=config.env.num_envs,
        drones_per_swarm=config.env.drones_per_swarm, updates=updates, repeats=repeats,
        threads_per_process=int(os.environ.get("OMP_NUM_THREADS", "1")), agent_steps_per_s=medians,
        all_runs=runs, speedup={n: medians[n] / medians[nprocs[0]] for n in nprocs}, torch_version=torch.__version__)
