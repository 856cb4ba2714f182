"""The demo flight: swarms changing formation under a geometric controller, with the full simulator.

Until a trained policy ships, this is what `make demo` shows: every part of the simulator at work
(parameters from hardware/, motor lag and noise, sensor noise, downwash, collisions, dynamic formations,
metrics) driven by a classical controller that knows nothing about its neighbours.
"""

from __future__ import annotations

import time

from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.controller import geometric_control
from nanoswarm.sim.env import SwarmEnv


def run_demo(num_envs: int = 16, drones: int = 8, seconds: float = 15.0, seed: int = 0) -> dict[str, float]:
    """Fly `num_envs` swarms of `drones` into a formation and, half-way, into another; return the metrics."""
    config = EnvConfig(num_envs=num_envs, drones_per_swarm=drones, num_neighbors=min(6, drones - 1),
                       scenario="dynamic_formation", episode_s=seconds, seed=seed,
                       goal_switch_s=(0.5 * seconds, 0.5 * seconds))
    env = SwarmEnv(config)
    env.reset()
    assert env.state is not None
    start = time.perf_counter()
    for _ in range(config.episode_steps):
        state = env.state
        result = env.step(geometric_control(state.drones, state.goals, state.params))
    wall = time.perf_counter() - start
    episode = {k: float(v.mean()) for k, v in result.info["episode"].items()}
    drone_steps = config.episode_steps * num_envs * drones
    return {
        "swarms": num_envs,
        "drones_per_swarm": drones,
        "flight_s": seconds,
        "success_rate": episode["success_rate"],
        "collision_rate": episode["collision_rate"],
        "collisions_per_drone_minute": episode["collisions_per_drone_minute"],
        "final_distance_m": episode["final_distance_m"],
        "time_in_air": episode["time_in_air"],
        "agent_steps_per_s": drone_steps / wall,
        "real_time_factor": seconds * num_envs / wall,
    }
