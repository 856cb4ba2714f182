"""Crazyflie rigid-body dynamics as a pure function of batched state tensors.

Frames and conventions (the project's one definition):
- World frame z-up; body frame x-forward, y-left, z-up. `rotation_matrix(quat)` maps body to world.
- Quaternions are scalar-first, (w, x, y, z), unit norm, body to world.
- Motors in the Crazyflie's X layout and numbering: M1 front-right (+x, -y), M2 back-right (-x, -y),
  M3 back-left (-x, +y), M4 front-left (+x, +y). The signs of the torques each motor makes are those of
  the firmware's force-torque mixer (`power_distribution_quadrotor.c`, `powerDistributionForceTorque`):
  M1 and M3 push yaw negative (they spin counter-clockwise seen from above), M2 and M4 positive.
- Action a in [-1, 1] per motor; commanded fraction f = (a + 1) / 2; commanded thrust
  thrust_max * (c0 + c1 f + c2 f^2) through the identified curve of `hardware/params`.

Every tensor may carry any leading batch shape (for example envs x drones); the last axis holds the
vector components. Nothing here loops over drones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from nanoswarm.sim.params import GRAVITY, DroneParams

# Rows: motors M1..M4. Columns: sign of the rotor's body x and y, and of its yaw reaction torque.
MOTOR_X_SIGN = (1.0, -1.0, -1.0, 1.0)
MOTOR_Y_SIGN = (-1.0, -1.0, 1.0, 1.0)
MOTOR_YAW_SIGN = (-1.0, 1.0, -1.0, 1.0)
RATE_ITERATIONS = 4  # fixed-point iterations of the implicit midpoint rule for the body rates


@dataclass
class DroneState:
    """Physical state of a batch of drones (SI units, frames as in the module docstring)."""

    pos: torch.Tensor          # (..., 3) world position of the centre of mass
    vel: torch.Tensor          # (..., 3) world velocity
    quat: torch.Tensor         # (..., 4) body-to-world attitude, (w, x, y, z)
    omega: torch.Tensor        # (..., 3) body angular rates
    thrust: torch.Tensor       # (..., 4) motor thrusts after the motor lag, before noise (N)
    motor_noise: torch.Tensor  # (..., 4) Ornstein-Uhlenbeck state, relative to thrust

    def replace(self, **changes: torch.Tensor) -> "DroneState":
        return dataclasses.replace(self, **changes)


def rotation_matrix(quat: torch.Tensor) -> torch.Tensor:
    """Body-to-world rotation matrix (..., 3, 3) of unit quaternions (w, x, y, z)."""
    w, x, y, z = quat.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = (
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    )
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (w, x, y, z) quaternions."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack((
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ), dim=-1)


def quat_from_rotvec(rotvec: torch.Tensor) -> torch.Tensor:
    """Unit quaternion of a rotation vector (axis times angle), exact for any angle."""
    half = 0.5 * torch.linalg.vector_norm(rotvec, dim=-1, keepdim=True)
    # sin(h)/(2h) with its Taylor series near zero, so that zero rotations stay finite.
    small = half < 1e-4
    safe_half = torch.where(small, torch.ones_like(half), half)
    scale = torch.where(small, 0.5 - half * half / 12.0, torch.sin(safe_half) / (2.0 * safe_half))
    return torch.cat((torch.cos(half), rotvec * scale), dim=-1)


def commanded_thrust(action: torch.Tensor, params: DroneParams) -> torch.Tensor:
    """Motor thrust (N) for actions in [-1, 1] through each drone's thrust curve."""
    f = ((action.clamp(-1.0, 1.0) + 1.0) * 0.5)
    c = params.thrust_curve
    return params.thrust_max * (c[..., 0:1] + f * (c[..., 1:2] + f * c[..., 2:3]))


def action_for_thrust(thrust: torch.Tensor, params: DroneParams) -> torch.Tensor:
    """Inverse of `commanded_thrust`: the action in [-1, 1] that commands `thrust` (N) per motor."""
    c0, c1, c2 = params.thrust_curve.unbind(-1)
    c0, c1, c2 = c0.unsqueeze(-1), c1.unsqueeze(-1), c2.unsqueeze(-1)
    target = (thrust / params.thrust_max).clamp(0.0, 1.0) - c0
    quadratic = c2 > 1e-6
    disc = (c1 * c1 + 4.0 * c2 * target).clamp_min(0.0)
    f_quad = (-c1 + torch.sqrt(disc)) / (2.0 * torch.where(quadratic, c2, torch.ones_like(c2)))
    f_lin = target / torch.where(c1.abs() > 1e-9, c1, torch.ones_like(c1))
    f = torch.where(quadratic, f_quad, f_lin).clamp(0.0, 1.0)
    return 2.0 * f - 1.0


def hover_thrust(params: DroneParams) -> torch.Tensor:
    """Per-motor thrust (..., 4) that balances gravity when all four motors share the load."""
    return (params.mass * GRAVITY / 4.0).unsqueeze(-1).expand(*params.mass.shape, 4)


def _mixer_columns(like: torch.Tensor) -> torch.Tensor:
    """(4, 3): per motor, the sign of its contribution to roll (y_i), pitch (-x_i) and yaw torque."""
    return torch.tensor(tuple(zip(MOTOR_Y_SIGN, (-x for x in MOTOR_X_SIGN), MOTOR_YAW_SIGN)),
                        dtype=like.dtype, device=like.device)


def body_wrench(thrust: torch.Tensor, params: DroneParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Collective thrust (...,) and body torque (..., 3) of the X-frame mixer for motor thrusts (..., 4).

    Torque about x is the sum of y_i T_i, about y the sum of -x_i T_i (rotor i at (x_i, y_i)), and
    about z the rotors' reaction torques, torque_to_thrust times T_i with the spin direction's sign.
    """
    signed = (thrust.unsqueeze(-1) * _mixer_columns(thrust)).sum(-2)
    arm = params.rotor_xy
    scale = torch.stack((arm, arm, params.torque_to_thrust), dim=-1)
    return thrust.sum(-1), signed * scale


def motor_thrusts_for_wrench(collective: torch.Tensor, torque: torch.Tensor, params: DroneParams
                             ) -> torch.Tensor:
    """Inverse mixer: per-motor thrusts (..., 4) that produce a collective thrust and body torque.

    The mixer's sign columns are orthogonal with squared norm 4, so the inverse is their transpose / 4
    (the firmware's `powerDistributionForceTorque` in closed form).
    """
    arm = params.rotor_xy
    scale = torch.stack((arm, arm, params.torque_to_thrust.clamp_min(1e-9)), dim=-1)
    per_axis = 0.25 * torque / scale
    return 0.25 * collective.unsqueeze(-1) + (per_axis.unsqueeze(-2) * _mixer_columns(torque)).sum(-1)


def physics_step(
    state: DroneState,
    thrust_cmd: torch.Tensor,
    params: DroneParams,
    dt: float,
    noise: torch.Tensor | None = None,
    extra_accel: torch.Tensor | None = None,
    drag: bool = False,
) -> DroneState:
    """Advance the drones by one physics step of `dt` seconds.

    thrust_cmd: (..., 4) commanded motor thrusts (N), after any action latency.
    noise: (..., 4) standard normal draws for the motor OU process; None turns motor noise off.
    extra_accel: (..., 3) world acceleration from outside the airframe (downwash); None for none.
    drag: apply the parameter set's linear body-frame drag (off skips the work when it is zero).

    Motors follow a first-order lag with separate rise and fall constants (solved exactly over dt);
    translation uses semi-implicit Euler, body rates the implicit midpoint rule, and the attitude is advanced by
    the exact quaternion exponential and renormalised, so it stays orthonormal over long rollouts.
    The floor at z = 0 is a contact: it stops downward motion and brakes sliding and spinning.
    """
    # Decay factors depend on parameters only, so a compiled step computes them once, not per motor.
    decay_up = torch.exp(-dt / params.motor_tau_up).unsqueeze(-1)
    decay_down = torch.exp(-dt / params.motor_tau_down).unsqueeze(-1)
    decay = torch.where(thrust_cmd > state.thrust, decay_up, decay_down)
    thrust = thrust_cmd + (state.thrust - thrust_cmd) * decay

    motor_noise = state.motor_noise
    actual = thrust
    if noise is not None:
        # Exact OU update: stationary standard deviation sigma, correlation time 1/theta.
        ou_decay = torch.exp(-params.motor_noise_theta * dt)
        ou_scale = params.motor_noise_sigma * torch.sqrt(1.0 - ou_decay * ou_decay)
        motor_noise = motor_noise * ou_decay.unsqueeze(-1) + ou_scale.unsqueeze(-1) * noise
        actual = (thrust * (1.0 + motor_noise)).clamp_min(0.0)

    collective, torque = body_wrench(actual, params)
    w, x, y, z = state.quat.unbind(-1)
    # Third column of the rotation matrix: the body z axis in the world frame.
    body_z = torch.stack((2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)), dim=-1)
    mass = params.mass.unsqueeze(-1)
    accel = body_z * (collective.unsqueeze(-1) / mass)
    accel = accel - torch.tensor((0.0, 0.0, GRAVITY), dtype=accel.dtype, device=accel.device)
    if drag:
        rot = rotation_matrix(state.quat)
        vel_body = (rot * state.vel.unsqueeze(-1)).sum(-2)                   # R^T v
        accel = accel - (rot * (params.drag * vel_body).unsqueeze(-2)).sum(-1) / mass
    if extra_accel is not None:
        accel = accel + extra_accel

    # Body rates by the implicit midpoint rule (fixed-point iterations): explicit Euler on the
    # gyroscopic term pumps energy into a tumbling drone and diverges after a collision spin kick;
    # the midpoint rule conserves rotational energy and angular momentum of a torque-free body.
    inertia = params.inertia
    start = state.omega
    omega = start
    for _ in range(RATE_ITERATIONS):
        mid = 0.5 * (start + omega)
        omega = start + dt * (torque - torch.linalg.cross(mid, inertia * mid)) / inertia
    vel = state.vel + dt * accel
    pos = state.pos + dt * vel
    quat = quat_multiply(state.quat, quat_from_rotvec(omega * dt))
    quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)

    # Floor contact: no penetration, no downward speed, and friction that stops a grounded drone
    # from sliding or spinning forever (a simple contact model; the pybullet backend is the check).
    grounded = pos[..., 2:3] <= 0.0
    pos = torch.cat((pos[..., :2], pos[..., 2:3].clamp_min(0.0)), dim=-1)
    brake = torch.where(grounded, 0.5, 1.0)
    vel = torch.cat((vel[..., :2] * brake, torch.where(grounded, vel[..., 2:3].clamp_min(0.0), vel[..., 2:3])),
                    dim=-1)
    omega = omega * brake
    return DroneState(pos=pos, vel=vel, quat=quat, omega=omega, thrust=thrust, motor_noise=motor_noise)
