"""Configuration of the swarm environment: typed, validated on load, every field named in errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from nanoswarm.config import require

SCENARIOS = ("hover", "random_goals", "same_goal", "swap_goals", "formation", "dynamic_formation",
             "obstacles", "mix")
FORMATIONS = ("circle", "grid", "sphere", "cube")
# Coulomb friction coefficient of every contact of a drone (with another drone, a column, a wall or the
# ceiling): plastic on plastic. One value for both physics backends, the torch simulator's contact model
# (`interactions.CollisionResponse`) and pybullet's (`bullet.world.BulletWorld`), so that a policy trained on
# one meets the same contacts on the other: a glancing contact at the rim of a drone's collision sphere
# spins it (about 11 rad/s in yaw for two drones passing at 2 m/s, 0.1 m apart), and a policy that never
# met that spin in training falls out of it (issue 6).
CONTACT_FRICTION = 0.5


@dataclass
class NoiseConfig:
    """Motor and sensor noise. Sensor standard deviations are per axis (QSRL and L2F ranges)."""

    motor: bool = True                 # OU thrust noise with the parameter set's sigma
    position: float = 0.005            # m
    velocity: float = 0.01             # m/s
    attitude: float = 0.005            # rad, small random rotation of the observed rotation matrix
    rates: float = 0.002               # rad/s
    observation_latency_steps: int = 0  # control steps between measurement and observation

    def validate(self) -> None:
        for name in ("position", "velocity", "attitude", "rates"):
            require(getattr(self, name) >= 0, name, "standard deviation must not be negative")
        require(self.observation_latency_steps >= 0, "observation_latency_steps", "must not be negative")

    @staticmethod
    def off() -> "NoiseConfig":
        return NoiseConfig(motor=False, position=0.0, velocity=0.0, attitude=0.0, rates=0.0)


@dataclass
class ThrowConfig:
    """Random initial states ("throws"): the swarm starts tumbling and must recover."""

    enabled: bool = False
    max_tilt_deg: float = 90.0         # attitude: random axis, angle up to this
    speed: float = 1.0                 # m/s, velocity standard deviation per axis
    rates: float = 5.0                 # rad/s, body-rate standard deviation per axis

    def validate(self) -> None:
        require(0 <= self.max_tilt_deg <= 180, "max_tilt_deg", "must be within [0, 180]")
        require(self.speed >= 0 and self.rates >= 0, "speed", "must not be negative")


@dataclass
class RewardConfig:
    """Per-step reward weights (QSRL's defaults, shared/reference/anchors.md), multiplied by dt where
    they are rates. Collision and proximity weights are scaled by the environment's penalty scale,
    which training anneals from 0 to 1."""

    distance: float = 1.0
    effort: float = 0.05
    floor: float = 1.0
    # Per second touching a wall or the ceiling. quad-swarm-rl has no such term (its 10 m room is seldom
    # touched); in a lab-sized room, policies without it learned to press against the ceiling, where
    # nothing can make them fall.
    wall: float = 1.0
    attitude: float = 1.0
    rates: float = 0.1
    # Off in QSRL. `velocity` (per second per m/s) damps the orbits that a pure distance cost leaves around
    # the goal; `arrival` pays per second up to its weight for being within about `arrival_range` of the goal,
    # the precision (0.1 m success) that a linear distance cost barely distinguishes from 0.3 m.
    velocity: float = 0.0
    # Per second per rad/s of yaw rate, on top of `rates`. Yaw torque is weak (4.7 mN m per N of thrust), so
    # untaught policies spin at ~2 rad/s; every tilt then has to chase a turning body frame, and
    # position control degrades into orbits around the goal.
    yaw_rate: float = 0.0
    arrival: float = 0.0
    arrival_range: float = 0.1         # m, the bonus is arrival * exp(-(d / arrival_range)^2)
    collision: float = 5.0             # per new drone-drone impact
    obstacle_collision: float = 5.0    # per new column impact
    proximity: float = 0.01
    proximity_range: float = 0.184     # m, proximity penalty grows linearly inside this distance
    proximity_max: float = 10.0

    def validate(self) -> None:
        for name in ("distance", "effort", "floor", "wall", "attitude", "rates", "velocity", "yaw_rate", "arrival",
                     "collision", "obstacle_collision", "proximity", "proximity_max"):
            require(getattr(self, name) >= 0, name, "weights are magnitudes and must not be negative")
        require(self.proximity_range > 0, "proximity_range", "must be positive (m)")
        require(self.arrival_range > 0, "arrival_range", "must be positive (m)")


@dataclass
class EnvConfig:
    """Everything that defines a batch of swarm environments."""

    num_envs: int = 1024
    drones_per_swarm: int = 8
    num_neighbors: int = 6             # K nearest neighbours observed; must be < drones_per_swarm
    scenario: str = "mix"
    mix: tuple[str, ...] = ("hover", "random_goals", "same_goal", "swap_goals", "formation",
                            "dynamic_formation")
    formations: tuple[str, ...] = FORMATIONS
    formation_spacing: tuple[float, float] = (0.5, 1.0)   # m, neighbour spacing drawn per episode
    goal_switch_s: tuple[float, float] = (4.0, 6.0)       # dynamic formations change this often
    params: str = "crazyflie21_sysid"  # hardware/params set or a YAML path
    randomize: bool = False            # domain randomisation per drone and episode
    randomization: str = "default"       # hardware/randomization set or a YAML path
    arena: str = "room10"
    obstacle_density: float = 0.0      # fraction of grid cells holding a column (scenario 'obstacles')
    obstacle_diameter: float = 0.6     # m
    obstacle_sense_range: float = 0.5  # m, the distance grid is clipped here
    physics_hz: float = 200.0
    control_hz: float = 100.0
    episode_s: float = 15.0
    success_radius: float = 0.5        # m, final distance to goal that counts as reached
    same_goal_success_radius: float = 1.0
    grace_s: float = 1.5               # collisions in the first seconds of an episode are not counted
    downwash: bool = True
    drag: bool = True                  # body drag as given by the parameter set (zero where unknown)
    restitution: float = 0.5
    collision_spin_kick: tuple[float, float] = (0.0, 0.0)  # rad/s; QSRL used (10 pi, 20 pi)
    contact_friction: float = CONTACT_FRICTION  # Coulomb coefficient of every contact (see CONTACT_FRICTION)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    throw: ThrowConfig = field(default_factory=ThrowConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    device: str = "cpu"
    seed: int = 0

    def validate(self) -> None:
        require(self.num_envs >= 1, "num_envs", f"must be at least 1, got {self.num_envs}")
        require(self.drones_per_swarm >= 1, "drones_per_swarm", f"must be at least 1, got {self.drones_per_swarm}")
        require(0 <= self.num_neighbors < self.drones_per_swarm, "num_neighbors",
                f"K must satisfy 0 <= K < drones_per_swarm (K={self.num_neighbors}, "
                f"M={self.drones_per_swarm}): a drone has only M - 1 neighbours")
        require(self.scenario in SCENARIOS, "scenario", f"unknown scenario '{self.scenario}'; choose one of {list(SCENARIOS)}")
        for name in self.mix:
            require(name in SCENARIOS and name not in ("mix", "obstacles"), "mix",
                    f"'{name}' cannot be mixed; choose from {[s for s in SCENARIOS if s not in ('mix', 'obstacles')]}")
        require(len(self.mix) > 0, "mix", "needs at least one scenario")
        for name in self.formations:
            require(name in FORMATIONS, "formations", f"unknown formation '{name}'; choose from {list(FORMATIONS)}")
        require(0 < self.formation_spacing[0] <= self.formation_spacing[1], "formation_spacing",
                "must be [low, high] with 0 < low <= high (m)")
        require(0 < self.goal_switch_s[0] <= self.goal_switch_s[1], "goal_switch_s", "must be [low, high] seconds")
        require(0.0 <= self.obstacle_density <= 0.8, "obstacle_density",
                f"must be within [0, 0.8], got {self.obstacle_density}")
        require(self.obstacle_density == 0.0 or self.scenario == "obstacles", "obstacle_density",
                "columns are placed only by scenario 'obstacles'; set scenario: obstacles")
        require(0.3 <= self.obstacle_diameter <= 0.85, "obstacle_diameter",
                f"must be within [0.3, 0.85] m, got {self.obstacle_diameter}")
        require(self.obstacle_sense_range > 0, "obstacle_sense_range", "must be positive (m)")
        require(self.control_hz > 0, "control_hz", "must be positive")
        ratio = self.physics_hz / self.control_hz
        require(ratio >= 1 and abs(ratio - round(ratio)) < 1e-9, "physics_hz",
                f"must be a whole multiple of control_hz ({self.physics_hz} / {self.control_hz})")
        require(self.episode_s * self.control_hz >= 1, "episode_s", "must last at least one control step")
        require(self.success_radius > 0 and self.same_goal_success_radius > 0, "success_radius", "must be positive")
        require(self.grace_s >= 0, "grace_s", "must not be negative")
        require(0 <= self.restitution <= 1, "restitution", "must be within [0, 1]")
        require(0 <= self.contact_friction <= 2, "contact_friction",
                f"must be within [0, 2] (a Coulomb coefficient; 0 is frictionless), got {self.contact_friction}")
        require(self.device == "cpu" or self.device.startswith("cuda"), "device", "must be 'cpu' or 'cuda[:N]'")

    @property
    def substeps(self) -> int:
        return round(self.physics_hz / self.control_hz)

    @property
    def episode_steps(self) -> int:
        return round(self.episode_s * self.control_hz)
