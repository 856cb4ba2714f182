"""Cross-check of the two physics backends: the same open-loop motor commands from the same initial states.

Both simulators fly M drones through actions (T, M, 4) held for a control step each, with noise and latency
off and no contacts (the drones start far apart, high in a large room); after every control step the
largest error over the drones is recorded for position (m), attitude (angle of the relative rotation, rad),
velocity (m/s) and body rates (rad/s). A report names the first quantity to exceed its tolerance and when,
which points at the physics that differs (a mass error shows first in velocity, an inertia error in rates).
The torch side is `dynamics.physics_step`; the pybullet side is the environment's own substep.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from nanoswarm.sim.bullet.urdf import write_urdf
from nanoswarm.sim.bullet.world import BulletWorld, bullet_substep, read_state
from nanoswarm.sim.dynamics import DroneState, commanded_thrust, hover_thrust, physics_step, quat_multiply
from nanoswarm.sim.params import DroneParams, QuadParams, nominal_drone_params
from nanoswarm.sim.tensor_struct import map_tensors

QUANTITIES = ("position", "attitude", "velocity", "rates")
ROOM = (200.0, 200.0, 200.0)   # m: nothing to touch within a few seconds of flight from mid-room


@dataclass(frozen=True)
class Tolerances:
    """Largest error over the drones allowed for each quantity."""

    position: float   # m
    attitude: float   # rad
    velocity: float   # m/s
    rates: float      # rad/s


@dataclass(frozen=True)
class Divergence:
    quantity: str
    time_s: float      # end of the first control step at which the error exceeded the tolerance
    error: float
    tolerance: float


@dataclass
class CrossCheck:
    """Errors (T,) per quantity after each control step, largest over the drones, and the verdict."""

    errors: dict[str, torch.Tensor]
    tolerances: Tolerances
    control_dt: float
    peak_rate: float   # largest body rate the torch side reached (rad/s): how aggressive the flight was

    @property
    def max_errors(self) -> dict[str, float]:
        return {q: float(e.max()) for q, e in self.errors.items()}

    @property
    def first_divergence(self) -> Divergence | None:
        """The quantity that exceeded its tolerance first; at the same step, the one furthest beyond it."""
        ratios = torch.stack([self.errors[q] / getattr(self.tolerances, q) for q in QUANTITIES])   # (4, T)
        over = (ratios > 1.0).any(0).nonzero()
        if not len(over):
            return None
        step = int(over[0])
        q = QUANTITIES[int(ratios[:, step].argmax())]
        return Divergence(q, (step + 1) * self.control_dt, float(self.errors[q][step]), getattr(self.tolerances, q))

    def summary(self) -> str:
        worst = ", ".join(f"{q} {e:.2e} (tol {getattr(self.tolerances, q):.0e})" for q, e in self.max_errors.items())
        d = self.first_divergence
        verdict = ("agree" if d is None else
                   f"DIVERGE: {d.quantity} first, at t = {d.time_s:.2f} s ({d.error:.3g} > {d.tolerance:.3g})")
        return f"torch vs pybullet {verdict}; max errors: {worst}"


def start_state(pos: torch.Tensor, quat: torch.Tensor, vel: torch.Tensor, omega: torch.Tensor,
                params: DroneParams) -> DroneState:
    """Initial states (M, ...) with the motors spinning at hover thrust."""
    return DroneState(pos=pos, vel=vel, quat=quat, omega=omega, thrust=hover_thrust(params),
                      motor_noise=torch.zeros_like(quat))


def attitude_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (rad) of the rotation between unit quaternions (w, x, y, z); atan2 keeps it exact near zero."""
    conj = a * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=a.dtype)
    rel = quat_multiply(conj, b)
    return 2.0 * torch.atan2(torch.linalg.vector_norm(rel[..., 1:], dim=-1), rel[..., 0].abs())


def run_crosscheck(actions: torch.Tensor, pos: torch.Tensor, quat: torch.Tensor, vel: torch.Tensor,
                   omega: torch.Tensor, params: QuadParams, tolerances: Tolerances, physics_hz: float = 200.0,
                   control_hz: float = 100.0, bullet_params: QuadParams | None = None) -> CrossCheck:
    """Fly actions (T, M, 4) from the initial states (M, ...) in both simulators and compare them.

    bullet_params: the airframe pybullet flies, `params` unless given (a deliberately wrong one must diverge).
    """
    substeps = round(physics_hz / control_hz)
    dt = 1.0 / physics_hz
    drones = pos.shape[0]
    torch_params = nominal_drone_params(params, drones, dt)
    other = bullet_params or params
    bullet_params_flat = nominal_drone_params(other, drones, dt)
    ours = start_state(pos, quat, vel, omega, torch_params)
    with tempfile.TemporaryDirectory(prefix="nanoswarm_crosscheck_") as folder:  # read once, by loadURDF
        world = BulletWorld(write_urdf(other, Path(folder)), drones, ROOM, dt, restitution=0.0)
    world.set_drones(ours, bullet_params_flat.mass, bullet_params_flat.inertia)
    # The pybullet side is batched like the environment's: one world, (1, M) tensors; same motor states.
    bullet = map_tensors(bullet_params_flat, lambda t: t.unsqueeze(0))
    theirs = map_tensors(ours, lambda t: t.unsqueeze(0))
    errors: dict[str, list[torch.Tensor]] = {q: [] for q in QUANTITIES}
    peak_rate = 0.0
    for action in actions:
        cmd_ours = commanded_thrust(action, torch_params)
        cmd_theirs = commanded_thrust(action.unsqueeze(0), bullet)
        for _ in range(substeps):
            ours = physics_step(ours, cmd_ours, torch_params, dt)
            theirs, _ = bullet_substep([world], theirs, cmd_theirs, bullet, dt, None, None)
        theirs = read_state([world], theirs)
        b = map_tensors(theirs, lambda t: t[0])
        errors["position"].append(torch.linalg.vector_norm(ours.pos - b.pos, dim=-1).max())
        errors["attitude"].append(attitude_error(ours.quat, b.quat).max())
        errors["velocity"].append(torch.linalg.vector_norm(ours.vel - b.vel, dim=-1).max())
        errors["rates"].append(torch.linalg.vector_norm(ours.omega - b.omega, dim=-1).max())
        peak_rate = max(peak_rate, float(torch.linalg.vector_norm(ours.omega, dim=-1).max()))
    return CrossCheck({q: torch.stack(e) for q, e in errors.items()}, tolerances, 1.0 / control_hz, peak_rate)
