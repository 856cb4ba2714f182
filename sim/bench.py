"""`nanoswarm bench sim`: simulator throughput at the control rate, everything included.

A measured step is what training pays for: both physics substeps, motor and sensor noise, neighbours,
the obstacle grid, collisions, downwash, rewards, observations and auto-resets. Episodes are staggered
so resets happen at the steady-state rate of a long run rather than all at once or never. Reported
numbers are medians over repeats, because this class of machine is noisy (see BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import platform
import resource
import statistics
import time
from dataclasses import dataclass

import torch

from nanoswarm.sim import tensor_struct
from nanoswarm.sim.config import CONTACT_FRICTION, EnvConfig
from nanoswarm.sim.env import SwarmEnv, first_nonfinite, nonfinite_message


@dataclass
class SimBenchResult:
    device: str
    device_name: str
    drones_per_swarm: int
    num_envs: int
    obstacle_density: float
    contact_friction: float
    compiled: bool
    steps_per_repeat: int
    repeats: int
    agent_steps_per_s: float            # median over repeats
    agent_steps_per_s_all: list[float]
    compile_s: float
    state_bytes_per_drone: float
    peak_rss_gib: float
    torch_version: str
    threads: int
    machine: str


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _state_bytes(env: SwarmEnv) -> int:
    total = 0

    def count(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.element_size() * t.numel()
        return t

    assert env.state is not None
    tensor_struct.map_tensors(env.state, count)
    return total


def bench_sim(config: EnvConfig, steps: int = 100, repeats: int = 5, compile: bool = True) -> SimBenchResult:
    """Median agent-steps per second of `SwarmEnv.step` for `config` (actions: uniform random).

    Stepped as the trainer steps it: the episodes each repeat restarts are drawn at its start (inside the
    timing), NaN and Inf are looked for once per repeat, so on a GPU no step waits for the host.
    """
    env = SwarmEnv(config, compile=compile, check_each_step=False)
    env.reset()
    device = env.device
    gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    actions = torch.rand((8, env.num_envs, env.drones, 4), generator=gen, device=device) * 2 - 1
    env.stagger(gen)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for i in range(3):  # warm-up: compilation and allocator
        env.step(actions[i % 8])
    sync()
    compile_s = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        env.reserve(env.ends_within(steps))
        for i in range(steps):
            env.step(actions[i % 8])
        sync()
        rates.append(steps * env.num_envs * env.drones / (time.perf_counter() - start))
        assert env.observation is not None
        if (where := first_nonfinite(env.observation, 2)) is not None:
            raise FloatingPointError(nonfinite_message("observation", env.observation, where))
    drones = env.num_envs * env.drones
    return SimBenchResult(
        device=str(device), device_name=device_name(device), drones_per_swarm=env.drones,
        num_envs=env.num_envs, obstacle_density=config.obstacle_density,
        contact_friction=config.contact_friction, compiled=compile,
        steps_per_repeat=steps, repeats=repeats, agent_steps_per_s=statistics.median(rates),
        agent_steps_per_s_all=rates, compile_s=compile_s, state_bytes_per_drone=_state_bytes(env) / drones,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        torch_version=torch.__version__, threads=torch.get_num_threads(),
        machine=f"{platform.node()} {platform.machine()}, {torch.get_num_threads()} threads",
    )


def profile_step(config: EnvConfig, steps: int = 20, compile: bool = True, rows: int = 15) -> str:
    """Where the time of a step goes: torch.profiler's table of the most expensive operators."""
    from torch.profiler import ProfilerActivity, profile

    env = SwarmEnv(config, compile=compile)
    env.reset()
    action = torch.zeros(env.num_envs, env.drones, 4, device=env.device)
    for _ in range(3):
        env.step(action)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if env.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            env.step(action)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def bench_config(drones_per_swarm: int, obstacle_density: float, num_envs: int | None, device: str,
                 contact_friction: float = CONTACT_FRICTION) -> EnvConfig:
    """The benchmark's environment: `mix` without obstacles, `obstacles` with them; about 64 k drones.
    contact_friction 0 measures the step without the friction solve, to price it."""
    envs = num_envs if num_envs is not None else max(1, 65536 // drones_per_swarm)
    base = EnvConfig(num_envs=envs, drones_per_swarm=drones_per_swarm, device=device,
                     num_neighbors=min(6, drones_per_swarm - 1), contact_friction=contact_friction)
    if obstacle_density > 0:
        return dataclasses.replace(base, scenario="obstacles", obstacle_density=obstacle_density)
    return base
