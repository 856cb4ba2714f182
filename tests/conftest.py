"""Small shared fixtures of the specification tests, and the tiny training run several of them start from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

# Inductor compiles in a pool of worker processes, one per core. With pytest-xdist already running one worker per
# core, that pool only starves the other worker, whose virtual swarm then falls behind the wall clock.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from nanoswarm.sim.avoidance import AvoidanceGains
from nanoswarm.sim.config import EnvConfig, NoiseConfig
from nanoswarm.sim.controller import GeometricGains
from nanoswarm.sim.dynamics import DroneState
from nanoswarm.policies import PolicyConfig
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.params import QuadParams, load_params
from nanoswarm.training.config import EvalConfig, PPOConfig, ReplayConfig, TrainConfig
from nanoswarm.training.kickstart import ControllerExpert

# pytest-xdist runs one worker per core: a second torch thread per worker only contends (small forward
# passes ran ~30x slower on a loaded 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def quad() -> QuadParams:
    """The nominal airframe every test flies unless it says otherwise."""
    return load_params("crazyflie21_sysid")


@pytest.fixture
def make_state() -> Callable[..., DroneState]:
    """Factory of a batch of `n` drones at rest and level at `pos`, motors at `thrust` (N per motor)."""

    def make(n: int, pos=(0.0, 0.0, 1.0), thrust: torch.Tensor | float = 0.0, omega=(0.0, 0.0, 0.0),
             vel=(0.0, 0.0, 0.0)) -> DroneState:
        def rows(value, width: int) -> torch.Tensor:
            t = torch.as_tensor(value, dtype=torch.float32)
            return t.expand(n, width).clone() if t.dim() <= 1 else t.clone()

        quat = torch.zeros(n, 4)
        quat[:, 0] = 1.0
        return DroneState(pos=rows(pos, 3), vel=rows(vel, 3), quat=quat, omega=rows(omega, 3),
                          thrust=rows(thrust, 4), motor_noise=torch.zeros(n, 4))

    return make


@pytest.fixture
def env_config() -> Callable[..., EnvConfig]:
    """Factory of a small, validated environment config: noise off, 2 envs of 3 drones, unless overridden."""

    def make(**overrides) -> EnvConfig:
        base = dict(num_envs=2, drones_per_swarm=3, num_neighbors=2, scenario="random_goals",
                    noise=NoiseConfig.off(), episode_s=2.0, seed=7)
        base.update(overrides)
        cfg = EnvConfig(**base)
        cfg.validate()
        return cfg

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A skipped test counts as a failure unless it needs CUDA and this machine has none: CI must not
    pass on tests that silently did not run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not (item.get_closest_marker("cuda") and not torch.cuda.is_available()):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} was skipped ({report.longrepr}); only CUDA tests may skip, and only without CUDA"


def tiny_config(**changes) -> TrainConfig:
    """A run small enough for a unit test: 4 swarms of 3 drones, 0.1 s episodes, eager simulator."""
    env = EnvConfig(num_envs=4, drones_per_swarm=3, num_neighbors=2, scenario="mix", episode_s=0.1,
                    noise=NoiseConfig.off(), seed=3)
    config = TrainConfig(env=env, policy=PolicyConfig(hidden=8, head=(16,), critic_hidden=8),
                         ppo=PPOConfig(rollout_steps=8, epochs=1, minibatches=2),
                         eval=EvalConfig(every_s=0), replay=ReplayConfig(enabled=False),
                         total_steps=4 * 3 * 8 * 3, checkpoint_every_s=1e9, compile=False, seed=1)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny policy saved as training saves one (its config included), flying 1 s episodes of
    3 drones swapping goals: enough to evaluate, report and render in well under a second."""
    from nanoswarm.config import to_mapping
    from nanoswarm.training.checkpoint import policy_payload, save_checkpoint
    from nanoswarm.training.train import hover_action
    from nanoswarm.sim.observation import ObservationLayout
    from nanoswarm.policies import SwarmPolicy

    config = tiny_config()
    config.env.scenario, config.env.episode_s = "swap_goals", 1.0
    hover = hover_action(config.env.params)
    policy = SwarmPolicy(ObservationLayout(num_neighbors=config.env.num_neighbors), config.policy, hover)
    path = tmp_path_factory.mktemp("checkpoint") / "policy.pt"
    save_checkpoint(path, {**policy_payload(policy, hover), "config": to_mapping(config)})
    return path


# The logged flight of `logged_flight`: the virtual8 swarm (8 drones) through missions/goal_swap.yaml, its
# telemetry written as `nanoswarm fly` writes it. Each drone climbs 1 m/s to 1 m and drifts +x at 0.5 m/s.
FLIGHT_S, FLIGHT_HZ = 2.0, 20.0
FLIGHT_PHASES = ((0.0, "0:takeoff begins"), (1.0, "1:goals begins"), (1.5, "4:land begins"))
MOTOR_COMMAND = 40000.0    # motor.mN of every drone, 0..65535


@pytest.fixture
def logged_flight(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a flight folder (with or without the motors block) and return its path."""
    from nanoswarm.firmware_bridge.flight_log import FlightLog
    from nanoswarm.firmware_bridge.manifest import load_manifest
    from nanoswarm.firmware_bridge.mission import load_mission

    def write(motors: bool = True, name: str = "flight") -> Path:
        manifest = load_manifest("virtual8")
        mission = load_mission(str(Path(__file__).resolve().parents[1] / "missions" / "goal_swap.yaml"))
        log = FlightLog(tmp_path / name, manifest.ids, start=0.0)
        log.write_configs(manifest=manifest, mission=mission)
        for k in range(int(FLIGHT_S * FLIGHT_HZ) + 1):
            t = k / FLIGHT_HZ
            for drone in manifest.drones:
                x, y, _ = drone.start
                log.telemetry(drone.id, "state", t, {"stateEstimate.x": x + 0.5 * t, "stateEstimate.y": y,
                                                     "stateEstimate.z": min(t, 1.0), "stateEstimate.vx": 0.5,
                                                     "stateEstimate.vy": 0.0, "stateEstimate.vz": float(t < 1.0)})
                if motors and k % 2 == 0:
                    log.telemetry(drone.id, "motors", t, {f"motor.m{i}": MOTOR_COMMAND for i in range(1, 5)})
        for t, message in FLIGHT_PHASES:
            log.event("phase", message, now=t)
        log.close()
        return log.folder

    return write


def expert_episode(config: EnvConfig, expert_gains: GeometricGains | None = None,
                   avoidance: AvoidanceGains | None = None) -> dict[str, torch.Tensor]:
    """Fly one whole episode of `config` with the kickstart's expert; the episode metrics (each (E,))."""
    env = SwarmEnv(config)
    obs = env.reset(config.seed)
    expert = ControllerExpert(env.layout, config, expert_gains or GeometricGains(), avoidance or AvoidanceGains())
    with torch.inference_mode():
        for _ in range(config.episode_steps):
            result = env.step(expert.deterministic_action(obs))
            obs = result.observation
    return result.info["episode"]
