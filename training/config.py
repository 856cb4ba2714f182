"""The training configuration: every hyperparameter of a run in one typed object (CleanRL's habit),
loaded from YAML and written back, resolved, beside the run's outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nanoswarm.config import ConfigError, load_config, require
from nanoswarm.policies.config import PolicyConfig
from nanoswarm.sim.avoidance import AvoidanceGains
from nanoswarm.sim.config import EnvConfig
from nanoswarm.training.dagger import DaggerConfig

LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class PPOConfig:
    rollout_steps: int = 16            # control steps per environment between updates
    epochs: int = 4                    # more gradient steps per sample learned faster here than more samples
    minibatches: int = 8
    learning_rate: float = 3e-4
    lr_schedule: str = "linear"        # decays to lr_final_fraction of the rate over total_steps
    lr_final_fraction: float = 0.1
    gamma: float = 0.99                # at 100 Hz: a horizon of about 1 s
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2            # in normalised-return units; 0 turns value clipping off
    entropy: float = 0.0
    value_coef: float = 0.5
    max_grad_norm: float = 1.0
    normalize_rewards: bool = True     # divide rewards by the running std of the discounted return
    critic_warmup_updates: int = 0     # first updates train only the critic (after a kickstart: its actor flies)

    def validate(self) -> None:
        require(self.rollout_steps >= 1, "rollout_steps", "must be at least 1")
        require(self.epochs >= 1 and self.minibatches >= 1, "epochs", "epochs and minibatches must be at least 1")
        require(self.learning_rate > 0, "learning_rate", "must be positive")
        require(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"choose one of {list(LR_SCHEDULES)}")
        require(0 < self.lr_final_fraction <= 1, "lr_final_fraction", "must be within (0, 1]")
        require(0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma", "gamma in (0, 1], gae_lambda in [0, 1]")
        require(self.clip > 0 and self.value_clip >= 0, "clip", "clip must be positive, value_clip not negative")
        require(self.max_grad_norm > 0, "max_grad_norm", "must be positive")
        require(self.critic_warmup_updates >= 0, "critic_warmup_updates", "must not be negative")


@dataclass
class CurriculumConfig:
    """What changes during a run, in agent steps (drone-steps summed over all environments)."""

    penalty_anneal_steps: float = 2e7    # collision and proximity penalties ramp linearly from 0 to 1
    # (agent_step, density) pairs: obstacle density from each step on (scenario 'obstacles' only)
    obstacle_density: tuple[tuple[float, float], ...] = ()

    def validate(self) -> None:
        require(self.penalty_anneal_steps >= 0, "penalty_anneal_steps", "must not be negative")
        steps = [s for s, _ in self.obstacle_density]
        require(steps == sorted(steps), "obstacle_density", "steps must be increasing")
        require(all(0.0 <= d <= 0.8 for _, d in self.obstacle_density), "obstacle_density",
                "densities must be within [0, 0.8]")


@dataclass
class ReplayConfig:
    """Collision replay (quad-swarm-rl, ICRA 2024): restart episodes from shortly before a collision."""

    enabled: bool = True
    snapshot_every_s: float = 0.5
    rewind_s: float = 1.5              # how far before the collision the replayed episode restarts
    capacity: int = 256                # environments held
    probability: float = 0.5           # chance that a resetting environment replays instead of starting fresh
    max_replays: int = 10              # an entry is dropped after this many replays
    min_time_in_air: float = 0.9       # replay starts once the drones can fly (mean fraction of time airborne)

    def validate(self) -> None:
        require(self.snapshot_every_s > 0, "snapshot_every_s", "must be positive")
        require(self.rewind_s >= self.snapshot_every_s, "rewind_s", "must be at least snapshot_every_s")
        require(self.capacity >= 1 and self.max_replays >= 1, "capacity", "capacity and max_replays must be >= 1")
        require(0 <= self.probability <= 1 and 0 <= self.min_time_in_air <= 1, "probability", "must be within [0, 1]")


@dataclass
class EvalConfig:
    """Periodic deterministic evaluation during training: what time-to-competence is measured on."""

    every_s: float = 120.0             # wall-clock seconds of training between evaluations; 0 turns it off
    episodes: int = 64
    success_target: float = 0.95       # 'competent' once success >= this ...
    collision_target: float = 1.0      # ... and collision rate <= this

    def validate(self) -> None:
        require(self.every_s >= 0, "every_s", "must not be negative")
        require(self.episodes >= 1, "episodes", "must be at least 1")


@dataclass
class ExpertConfig:
    """The kickstart's teacher: the geometric controller flying the velocity that reactive avoidance of
    neighbours and columns (`sim/avoidance.py`) makes of its goal velocity."""

    # Cruise speed (m/s). Among columns it must be lower: the velocity loop lags about 0.4 s behind its
    # command (the 0.25 s falling motor constant) and columns are sensed only 0.5 m away.
    max_speed: float = 1.5
    avoidance: AvoidanceGains = field(default_factory=AvoidanceGains)

    def validate(self) -> None:
        require(self.max_speed > 0, "max_speed", "must be positive (m/s)")
        self.avoidance.validate()


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    total_steps: int = 100_000_000     # agent steps
    checkpoint_every_s: float = 120.0
    init_from: str | None = None       # start from this checkpoint's policy (fine-tuning)
    # Before PPO, imitate the geometric controller (DAgger) for this many iterations (0: off); see kickstart.py.
    kickstart: DaggerConfig = field(default_factory=lambda: DaggerConfig(iterations=0))
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    compile: bool = True               # torch.compile the simulator step and the PPO loss (needs a C++ compiler)
    seed: int = 0

    def validate(self) -> None:
        for part in (self.env, self.policy, self.ppo, self.curriculum, self.replay, self.eval, self.kickstart,
                     self.expert):
            part.validate()
        require(self.total_steps >= 1, "total_steps", "must be at least 1")
        require(not (self.init_from and self.kickstart.iterations), "kickstart",
                "a run starts either from init_from or from the kickstart; set kickstart.iterations: 0")
        require(self.checkpoint_every_s > 0, "checkpoint_every_s", "must be positive")
        require(not self.curriculum.obstacle_density or self.env.scenario == "obstacles",
                "curriculum.obstacle_density", "a density schedule needs env.scenario: obstacles")
        batch = self.env.num_envs * self.ppo.rollout_steps
        require(batch >= self.ppo.minibatches, "ppo.minibatches",
                f"{self.ppo.minibatches} minibatches need at least as many (env, step) rows; have {batch}")


CONFIG_DIR = Path(__file__).parent / "configs"


def available_train_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_train_config(name_or_path: str) -> TrainConfig:
    """A ready-made config by name (training/configs/NAME.yaml) or any YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"no ready-made training config '{name_or_path}'; choose one of "
                              f"{available_train_configs()} or give a YAML path")
    return load_config(TrainConfig, path)
