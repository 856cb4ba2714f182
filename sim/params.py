"""Physical parameters: nominal sets from `hardware/`, domain randomisation, and per-drone tensors.

Parameters are data with sources (the YAML files in `hardware/params/`), never literals in code. The
simulator works on `DroneParams`, one row per drone, so every drone of a batch may fly a different
airframe: that is what domain randomisation needs and what a mixed real swarm looks like.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from nanoswarm.config import require
from nanoswarm.hardware import available, load_hardware
from nanoswarm.sim.tensor_struct import as_component_major

GRAVITY = 9.81  # m/s^2


@dataclass(frozen=True)
class QuadParams:
    """One nominal airframe, as stored in `hardware/params/NAME.yaml` (SI units)."""

    name: str
    mass: float
    inertia: tuple[float, float, float]
    rotor_xy: float
    thrust_max: float
    thrust_curve: tuple[float, float, float]
    torque_to_thrust: float
    motor_tau_up: float
    motor_tau_down: float
    drag: tuple[float, float, float] = (0.0, 0.0, 0.0)
    motor_noise_sigma: float = 0.0
    motor_noise_theta: float = 30.0
    latency: float = 0.0
    collision_radius: float = 0.046

    def validate(self) -> None:
        require(self.collision_radius > 0, "collision_radius", "must be positive (m)")
        require(self.mass > 0, "mass", f"must be positive (kg), got {self.mass}")
        require(all(i > 0 for i in self.inertia), "inertia", f"entries must be positive, got {self.inertia}")
        require(self.rotor_xy > 0, "rotor_xy", f"must be positive (m), got {self.rotor_xy}")
        require(self.thrust_max > 0, "thrust_max", f"must be positive (N), got {self.thrust_max}")
        require(abs(sum(self.thrust_curve) - 1.0) < 1e-3, "thrust_curve",
                f"coefficients must sum to 1 so that full command gives thrust_max, got {self.thrust_curve}")
        require(self.motor_tau_up > 0 and self.motor_tau_down > 0, "motor_tau_up",
                "motor time constants must be positive (s)")
        require(self.torque_to_thrust >= 0, "torque_to_thrust", "must not be negative")
        require(all(d >= 0 for d in self.drag), "drag", f"entries must not be negative, got {self.drag}")
        require(self.motor_noise_sigma >= 0, "motor_noise_sigma", "must not be negative")
        require(self.latency >= 0, "latency", "must not be negative (s)")
        require(4 * self.thrust_max > self.mass * GRAVITY, "thrust_max",
                f"four motors ({4 * self.thrust_max:.3f} N) cannot lift the mass ({self.mass * GRAVITY:.3f} N)")

    @property
    def thrust_to_weight(self) -> float:
        return 4 * self.thrust_max / (self.mass * GRAVITY)


Range = tuple[float, float]


@dataclass(frozen=True)
class RandomizationRanges:
    """Per-drone sampling ranges, as stored in `hardware/randomization/NAME.yaml`."""

    mass: Range
    thrust_to_weight: Range
    motor_gain: Range
    thrust_curve_quadratic: Range
    inertia_xy: Range
    inertia_z: Range
    rotor_xy: Range
    torque_to_thrust: Range
    motor_tau_up: Range
    motor_tau_down: Range
    motor_noise_sigma: Range
    latency: Range

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            low, high = getattr(self, f.name)
            require(0 <= low <= high, f.name, f"must be [low, high] with 0 <= low <= high, got {[low, high]}")
        # Physical quantities the dynamics divide by, or sample log-uniformly, cannot reach zero.
        for name in ("mass", "inertia_xy", "inertia_z", "rotor_xy", "motor_tau_up", "motor_tau_down"):
            require(getattr(self, name)[0] > 0, name, f"lower bound must be positive, got {getattr(self, name)[0]}")
        require(self.thrust_to_weight[0] > 1.0, "thrust_to_weight", "lower bound must exceed 1 to fly")


def load_params(name_or_path: str) -> QuadParams:
    """Load a nominal parameter set by name (`crazyflie21_sysid`) or by YAML path."""
    return load_hardware(QuadParams, "params", name_or_path, "params")


def available_param_sets() -> list[str]:
    return available("params")


def load_randomization(name_or_path: str = "default") -> RandomizationRanges:
    return load_hardware(RandomizationRanges, "randomization", name_or_path, "randomization")


@dataclass
class DroneParams:
    """Per-drone physical parameters as tensors with any leading batch shape (...): (N,) when drawn,
    (E, M) inside the environment, where the per-axis and per-motor fields are stored component-major."""

    mass: torch.Tensor              # (...)
    inertia: torch.Tensor           # (..., 3) diagonal, body frame
    rotor_xy: torch.Tensor          # (...)
    thrust_max: torch.Tensor        # (..., 4) per motor, includes per-motor gain
    thrust_curve: torch.Tensor      # (..., 3) normalised polynomial coefficients
    torque_to_thrust: torch.Tensor  # (...)
    motor_tau_up: torch.Tensor      # (...)
    motor_tau_down: torch.Tensor    # (...)
    drag: torch.Tensor              # (..., 3) body-frame linear drag, N s/m
    motor_noise_sigma: torch.Tensor  # (...)
    motor_noise_theta: torch.Tensor  # (...)
    latency_steps: torch.Tensor     # (...) int64, action latency in physics steps

    def component_major(self) -> "DroneParams":
        """The same values with the per-axis and per-motor fields stored component-major
        (see `tensor_struct.component_major`), the layout the compiled step vectorises over."""
        return dataclasses.replace(self, **{name: as_component_major(getattr(self, name))
                                            for name in ("inertia", "thrust_max", "thrust_curve", "drag")})


def nominal_drone_params(p: QuadParams, n: int, physics_dt: float, device: torch.device | str = "cpu"
                         ) -> DroneParams:
    """`n` identical drones with the nominal parameters of `p`."""
    def full(value: float | tuple, dtype=torch.float32) -> torch.Tensor:
        row = torch.as_tensor(value, dtype=dtype, device=device)
        return row.expand(n, *row.shape).clone()

    return DroneParams(
        mass=full(p.mass), inertia=full(p.inertia), rotor_xy=full(p.rotor_xy),
        thrust_max=full((p.thrust_max,) * 4), thrust_curve=full(p.thrust_curve),
        torque_to_thrust=full(p.torque_to_thrust), motor_tau_up=full(p.motor_tau_up),
        motor_tau_down=full(p.motor_tau_down), drag=full(p.drag),
        motor_noise_sigma=full(p.motor_noise_sigma), motor_noise_theta=full(p.motor_noise_theta),
        latency_steps=full(round(p.latency / physics_dt), torch.int64),
    )


def randomized_drone_params(p: QuadParams, r: RandomizationRanges, n: int, physics_dt: float,
                            generator: torch.Generator, device: torch.device | str = "cpu") -> DroneParams:
    """`n` drones with parameters drawn independently from the ranges `r` (uniform or log-uniform)."""
    def uniform(rng: Range, *shape: int) -> torch.Tensor:
        u = torch.rand((n, *shape), generator=generator, device=device)
        return rng[0] + (rng[1] - rng[0]) * u

    def log_uniform(rng: Range, *shape: int) -> torch.Tensor:
        return torch.exp(uniform((math.log(rng[0]), math.log(rng[1])), *shape))

    mass = uniform(r.mass)
    thrust_max = (uniform(r.thrust_to_weight) * mass * GRAVITY / 4).unsqueeze(1) * uniform(r.motor_gain, 4)
    w = uniform(r.thrust_curve_quadratic)
    curve = torch.stack([torch.zeros_like(w), 1.0 - w, w], dim=1)
    inertia_xy = log_uniform(r.inertia_xy)
    inertia = torch.stack([inertia_xy, inertia_xy, log_uniform(r.inertia_z)], dim=1)
    return DroneParams(
        mass=mass, inertia=inertia, rotor_xy=uniform(r.rotor_xy), thrust_max=thrust_max, thrust_curve=curve,
        torque_to_thrust=uniform(r.torque_to_thrust), motor_tau_up=uniform(r.motor_tau_up),
        motor_tau_down=uniform(r.motor_tau_down),
        drag=torch.as_tensor(p.drag, dtype=torch.float32, device=device).expand(n, 3).clone(),
        motor_noise_sigma=uniform(r.motor_noise_sigma),
        motor_noise_theta=torch.full((n,), p.motor_noise_theta, device=device),
        latency_steps=torch.round(uniform(r.latency) / physics_dt).to(torch.int64),
    )
