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
from nanoswarm.sim.tensor_struct import component_major

# Rows: motors M1..M4. Columns: sign of the rotor's body x and y, and of its yaw reaction torque.
MOTOR_X_SIGN = (1.0, -1.0, -1.0, 1.0)
MOTOR_Y_SIGN = (-1.0, -1.0, 1.0, 1.0)
MOTOR_YAW_SIGN = (-1.0, 1.0, -1.0, 1.0)
RATE_ITERATIONS = 4  # fixed-point iterations of the implicit midpoint rule for the body rates
# Body rates are bounded per axis. Without rotor drag nothing else limits the yaw rate a policy can
# spin up, and beyond about 1 / (dt |omega| (I_z - I_x) / I_x) the fixed-point iteration stops
# contracting and the rates diverge. 40 rad/s is quad-swarm-rl's clip and just above the
# Crazyflie 2.1's gyro range (BMI088, +-2000 deg/s = 34.9 rad/s), so no flight a Crazyflie can
# measure is affected.
MAX_BODY_RATE = 40.0


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
    """Hamilton product a * b of (w, x, y, z) quaternions (component-major result)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return component_major(
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    )


def quat_from_rotvec(rotvec: torch.Tensor) -> torch.Tensor:
    """Unit quaternion of a rotation vector (axis times angle), exact for any angle."""
    half = 0.5 * torch.linalg.vector_norm(rotvec, dim=-1)
    # sin(h)/(2h) with its Taylor series near zero, so that zero rotations stay finite.
    small = half < 1e-4
    safe_half = torch.where(small, torch.ones_like(half), half)
    scale = torch.where(small, 0.5 - half * half / 12.0, torch.sin(safe_half) / (2.0 * safe_half))
    return component_major(torch.cos(half), *(rotvec * scale.unsqueeze(-1)).unbind(-1))


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


def mixer(t: tuple[torch.Tensor, ...], arm: torch.Tensor, torque_to_thrust: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collective thrust and body torques (x, y, z) of motor thrusts t = (T1, T2, T3, T4), each (...,).

    Torque about x is the sum of y_i T_i, about y the sum of -x_i T_i (rotor i at (x_i, y_i)), and
    about z the rotors' reaction torques, torque_to_thrust times T_i with the spin direction's sign.
    Written per component so that every operation runs over the whole batch at once.
    """
    def signed(signs: tuple[float, ...]) -> torch.Tensor:
        return sum(sign * ti for sign, ti in zip(signs, t))  # type: ignore[return-value]

    return (t[0] + t[1] + t[2] + t[3], arm * signed(MOTOR_Y_SIGN),
            arm * signed(tuple(-x for x in MOTOR_X_SIGN)), torque_to_thrust * signed(MOTOR_YAW_SIGN))


def body_wrench(thrust: torch.Tensor, params: DroneParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Collective thrust (...,) and body torque (..., 3) of the X-frame mixer for motor thrusts (..., 4)."""
    collective, tx, ty, tz = mixer(thrust.unbind(-1), params.rotor_xy, params.torque_to_thrust)
    return collective, torch.stack((tx, ty, tz), dim=-1)


def motor_thrusts_for_wrench(collective: torch.Tensor, torque: torch.Tensor, params: DroneParams
                             ) -> torch.Tensor:
    """Inverse mixer: per-motor thrusts (..., 4) that produce a collective thrust and body torque.

    The mixer's sign columns are orthogonal with squared norm 4, so the inverse is their transpose / 4
    (the firmware's `powerDistributionForceTorque` in closed form).
    """
    roll = 0.25 * torque[..., 0] / params.rotor_xy
    pitch = 0.25 * torque[..., 1] / params.rotor_xy
    yaw = 0.25 * torque[..., 2] / params.torque_to_thrust.clamp_min(1e-9)
    quarter = 0.25 * collective
    return torch.stack([quarter + ys * roll - xs * pitch + zs * yaw
                        for xs, ys, zs in zip(MOTOR_X_SIGN, MOTOR_Y_SIGN, MOTOR_YAW_SIGN)], dim=-1)


Components = tuple[torch.Tensor, ...]


def motor_response(state: DroneState, thrust_cmd: torch.Tensor, params: DroneParams, dt: float,
                   noise: torch.Tensor | None) -> tuple[Components, Components, Components]:
    """The motors over one physics step of `dt`: lagged thrusts, OU noise states and the thrusts the rotors
    deliver, each a tuple of four (...,) tensors (M1..M4).

    First-order lag with separate rise and fall constants, solved exactly over dt; noise (..., 4) are
    standard normal draws for the OU process, None for none. Every physics backend calls this, so the
    motors are defined once.
    """
    # Decay factors depend on parameters only: computed once per drone, not per motor.
    decay_up = torch.exp(-dt / params.motor_tau_up)
    decay_down = torch.exp(-dt / params.motor_tau_down)
    thrust = tuple(c + (t - c) * torch.where(c > t, decay_up, decay_down)
                   for c, t in zip(thrust_cmd.unbind(-1), state.thrust.unbind(-1)))

    motor_noise = state.motor_noise.unbind(-1)
    actual = thrust
    if noise is not None:
        # Exact OU update: stationary standard deviation sigma, correlation time 1/theta.
        ou_decay = torch.exp(-params.motor_noise_theta * dt)
        ou_scale = params.motor_noise_sigma * torch.sqrt(1.0 - ou_decay * ou_decay)
        motor_noise = tuple(m * ou_decay + ou_scale * n for m, n in zip(motor_noise, noise.unbind(-1)))
        actual = tuple((t * (1.0 + m)).clamp_min(0.0) for t, m in zip(thrust, motor_noise))
    return thrust, motor_noise, actual


def _cross(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


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

    Motors follow `motor_response` (first-order lag, optional OU noise); translation uses semi-implicit
    Euler, body rates the implicit midpoint rule, and the attitude is advanced by the exact quaternion
    exponential and renormalised, so it stays orthonormal over long rollouts. The floor at z = 0 is a
    contact: it stops downward motion and brakes sliding and spinning.

    The body works on components (x, y, z as separate (...,) tensors) rather than on (..., 3) tensors:
    compiled, every loop then runs over the batch of drones and vectorises, instead of over 3 or 4.
    """
    thrust, motor_noise, actual = motor_response(state, thrust_cmd, params, dt, noise)
    collective, tx, ty, tz = mixer(actual, params.rotor_xy, params.torque_to_thrust)
    qw, qx, qy, qz = state.quat.unbind(-1)
    vx, vy, vz = state.vel.unbind(-1)
    # Thrust along the body z axis, the third column of the rotation matrix.
    f = collective / params.mass
    ax = f * 2 * (qx * qz + qw * qy)
    ay = f * 2 * (qy * qz - qw * qx)
    az = f * (1 - 2 * (qx * qx + qy * qy)) - GRAVITY
    if drag:
        rot = rotation_matrix(state.quat)
        vel_body = (rot * state.vel.unsqueeze(-1)).sum(-2)                   # R^T v
        drag_accel = (rot * (params.drag * vel_body).unsqueeze(-2)).sum(-1) / params.mass.unsqueeze(-1)
        ax, ay, az = ax - drag_accel[..., 0], ay - drag_accel[..., 1], az - drag_accel[..., 2]
    if extra_accel is not None:
        ax, ay, az = ax + extra_accel[..., 0], ay + extra_accel[..., 1], az + extra_accel[..., 2]

    # Body rates by the implicit midpoint rule (fixed-point iterations): explicit Euler on the
    # gyroscopic term pumps energy into a tumbling drone and diverges after a collision spin kick;
    # the midpoint rule conserves rotational energy and angular momentum of a torque-free body.
    inertia = params.inertia.unbind(-1)
    torque = (tx, ty, tz)
    start = state.omega.unbind(-1)
    omega = start
    for _ in range(RATE_ITERATIONS):
        mid = tuple(0.5 * (s0 + w) for s0, w in zip(start, omega))
        gyro = _cross(mid, tuple(i * m for i, m in zip(inertia, mid)))
        omega = tuple(s0 + dt * (t - g) / i for s0, t, g, i in zip(start, torque, gyro, inertia))
    omega = tuple(w.clamp(-MAX_BODY_RATE, MAX_BODY_RATE) for w in omega)

    vx, vy, vz = vx + dt * ax, vy + dt * ay, vz + dt * az
    px, py, pz = state.pos.unbind(-1)
    px, py, pz = px + dt * vx, py + dt * vy, pz + dt * vz

    # Attitude: q <- q * exp(omega dt / 2), renormalised.
    quat = quat_multiply(state.quat, quat_from_rotvec(component_major(*omega) * dt))
    nw, nx, ny, nz = quat.unbind(-1)
    inv_norm = torch.rsqrt(nw * nw + nx * nx + ny * ny + nz * nz)

    # Floor contact: no penetration, no downward speed, and friction that stops a grounded drone
    # from sliding or spinning forever (a simple contact model; the pybullet backend is the check).
    grounded = pz <= 0.0
    brake = torch.where(grounded, 0.5, 1.0)
    return DroneState(
        pos=component_major(px, py, pz.clamp_min(0.0)),
        vel=component_major(vx * brake, vy * brake, torch.where(grounded, vz.clamp_min(0.0), vz)),
        quat=component_major(nw * inv_norm, nx * inv_norm, ny * inv_norm, nz * inv_norm),
        omega=component_major(*(w * brake for w in omega)),
        thrust=component_major(*thrust), motor_noise=component_major(*motor_noise))
