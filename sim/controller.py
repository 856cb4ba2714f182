"""A batched geometric position controller (Lee, Leok and McClamroch, 2010) on SO(3).

It flies the demo and gives every user a working baseline before any policy is trained: it maps each
drone's state and goal straight to the same 4 motor actions a policy outputs, through the same inverse
mixer and thrust curve. It does not avoid other drones; collisions it suffers are what a learned swarm
policy is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoswarm.sim.dynamics import DroneState, action_for_thrust, motor_thrusts_for_wrench, rotation_matrix
from nanoswarm.sim.params import GRAVITY, DroneParams


@dataclass(frozen=True)
class GeometricGains:
    """Gains as accelerations, so they suit any mass and inertia. Tuned on the single-drone throw task
    (`training/configs/single.yaml`, 256 throws, see BENCHMARKS.md). Two changes made the stiff attitude
    loop possible: yaw gets a fifth of roll's and pitch's gains (at equal gains a thrown drone's yaw error
    saturated the motors with yaw torque, leaving no roll or pitch authority; yaw now also comes last in the
    mixer), and saturating motors give up collective thrust, not torque (see `velocity_control`)."""

    position: float = 8.0        # 1/s^2
    velocity: float = 5.0        # 1/s
    attitude: float = 230.0      # 1/s^2
    rates: float = 40.0          # 1/s
    max_lateral_accel: float = 4.0   # m/s^2, limits the tilt
    max_speed: float = 1.5           # m/s, the position error is saturated to keep approaches gentle
    yaw_weight: float = 0.2          # yaw's gains as a fraction of roll's and pitch's


def _vee(skew: torch.Tensor) -> torch.Tensor:
    return torch.stack((skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]), dim=-1)


def geometric_control(state: DroneState, goals: torch.Tensor, params: DroneParams,
                      gains: GeometricGains = GeometricGains()) -> torch.Tensor:
    """Actions (..., 4) in [-1, 1] that fly each drone to its goal with zero yaw."""
    return velocity_control(goal_velocity(goals - state.pos, gains), state.vel, rotation_matrix(state.quat),
                            state.omega, params, gains)


def goal_velocity(error: torch.Tensor, gains: GeometricGains = GeometricGains()) -> torch.Tensor:
    """The velocity (..., 3) the position loop asks for: proportional to the error, saturated at max_speed
    so that far goals are approached at a steady speed, not with maximum tilt."""
    desired_vel = error * gains.position / gains.velocity
    speed = torch.linalg.vector_norm(desired_vel, dim=-1, keepdim=True)
    return desired_vel * (gains.max_speed / speed.clamp_min(gains.max_speed))


def velocity_control(desired_vel: torch.Tensor, vel: torch.Tensor, rot: torch.Tensor, omega: torch.Tensor,
                     params: DroneParams, gains: GeometricGains = GeometricGains()) -> torch.Tensor:
    """Actions (..., 4) that track `desired_vel`: the inner loops of the geometric controller. Anything that
    shapes a velocity (the position loop, collision avoidance) flies through here."""
    accel = gains.velocity * (desired_vel - vel)
    lateral = accel[..., :2]
    norm = torch.linalg.vector_norm(lateral, dim=-1, keepdim=True)
    lateral = lateral * (gains.max_lateral_accel / norm.clamp_min(gains.max_lateral_accel))
    accel = torch.cat((lateral, accel[..., 2:].clamp(-0.5 * GRAVITY, GRAVITY)), dim=-1)
    force = params.mass.unsqueeze(-1) * (accel + torch.tensor((0.0, 0.0, GRAVITY), device=accel.device))

    rot_error = _tilt_then_yaw_error(force / torch.linalg.vector_norm(force, dim=-1, keepdim=True), rot)
    inertia = params.inertia
    axis_weight = torch.tensor((1.0, 1.0, gains.yaw_weight), device=rot.device)
    torque = (inertia * axis_weight * (-gains.attitude * rot_error - gains.rates * omega)
              + torch.linalg.cross(omega, inertia * omega))
    collective = (force * rot[..., :, 2]).sum(-1).clamp_min(0.0)
    roll_pitch = torque * torque.new_tensor((1.0, 1.0, 0.0))
    thrusts = motor_thrusts_for_wrench(collective, roll_pitch, params)
    # Keep the roll and pitch torque when a motor would saturate: lower all four by the excess, as the
    # firmware's powerDistributionCap does. Clipping the one motor instead cut the attitude loop's authority
    # just when it was needed (full-thrust climbs out of a throw), and the drone tumbled into the floor.
    excess = (thrusts - params.thrust_max).amax(-1, keepdim=True).clamp_min(0.0)
    thrusts = thrusts - excess
    yaw_split = motor_thrusts_for_wrench(torch.zeros_like(collective), torque - roll_pitch, params)
    return action_for_thrust((thrusts + _yaw_within_headroom(thrusts, yaw_split, params)).clamp_min(0.0), params)


# rad: the yaw error the attitude loop acts on is saturated here, so that the yaw rate it settles at stays
# below MAX_YAW_ERROR * attitude / rates (1.7 rad/s at the default gains). Unsaturated, a thrown drone whose
# heading had drifted 135 degrees off swung back at 9 rad/s, and at that spin the tilt loop went unstable.
MAX_YAW_ERROR = 0.3


def _tilt_then_yaw_error(thrust_axis: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Attitude error (..., 3) for the body torque: the tilt away from `thrust_axis` (unit, (..., 3)) as
    Lee et al.'s SO(3) error against an attitude that keeps the drone's own heading, plus the yaw away from
    heading +x on the body z axis, faded out as the drone tilts past level.

    Why not Lee et al.'s error against heading +x: near 180 degrees of yaw error, the shortest rotation to
    the desired attitude runs through a flip about a horizontal axis, and a thrown drone that a net had spun
    about yaw was commanded through that flip into the floor. Yaw is then only what is left to fix."""
    yaw = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])          # heading of the body x axis, 0 when vertical
    heading = torch.stack((torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw)), dim=-1)
    b2 = torch.linalg.cross(thrust_axis, heading)               # thrust_axis points up: never along heading
    b2 = b2 / torch.linalg.vector_norm(b2, dim=-1, keepdim=True)
    desired = torch.stack((torch.linalg.cross(b2, thrust_axis), b2, thrust_axis), dim=-1)
    tilt = 0.5 * _vee(desired.transpose(-1, -2) @ rot - rot.transpose(-1, -2) @ desired)
    yaw_error = yaw.clamp(-MAX_YAW_ERROR, MAX_YAW_ERROR) * rot[..., 2, 2].clamp_min(0.0)
    return tilt + torch.stack((torch.zeros_like(yaw), torch.zeros_like(yaw), yaw_error), dim=-1)


def _yaw_within_headroom(thrusts: torch.Tensor, yaw_split: torch.Tensor, params: DroneParams) -> torch.Tensor:
    """The yaw torque's motor split (..., 4; +y on one diagonal, -y on the other) scaled down to the room the
    motors have left between 0 and thrust_max. Yaw comes last: a rotor's drag torque is 4.7 mm times its
    thrust against roll's 28 mm lever, so a unit of yaw torque takes 6 times the thrust difference, and
    given priority, the yaw error of a drone that a net had spun pinned two motors at zero and it fell from
    2 m to the floor."""
    room = torch.where(yaw_split > 0, params.thrust_max - thrusts, thrusts).clamp_min(0.0)
    scale = (room / yaw_split.abs().clamp_min(1e-12)).amin(-1, keepdim=True).clamp(max=1.0)
    return scale * yaw_split
