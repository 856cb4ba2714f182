"""The stock controller of the virtual drones: what the firmware's PID (or any stock controller) does with
the commander's setpoint, stood in for by the simulator's batched controllers.

Setpoints that fly a position or a velocity go to `sim.controller.geometric_control`, the project's
position controller: a position axis flies to the setpoint's position, a velocity axis to the drone's own
position plus v * (velocity gain / position gain), the goal whose velocity command is v. Of a position
setpoint's velocity (full-state setpoints, the high-level planner) only descents are fed forward, in the same
way: with the identified motors' slow spin-down (0.25 s), feeding climbs forward makes this controller
overshoot a 0.5 m take-off in 0.8 s to 0.81 m (0.57 m without), feeding xy forward overshoots a 0.5 m go-to by
about 40 %, but a landing needs its descent fed forward to reach the floor when its plan ends, where the
high-level commander stops the motors (a 1.5 s landing from 0.5 m ends 4 mm above the floor instead of
0.27 m; all measured). So plans are followed with a lag of up to about a second. Hovering, the controller
holds a position to about 0.13 m (mean error, measured): the simulator's motor noise, rectified by the
motors' fast spin-up and slow spin-down, pushes the drone around (an integrator, tried, made it worse).
Setpoints that fly an attitude (RPYT, z-distance, manual, and the supervisor's level-out) go to
`attitude_control`, an attitude loop on SO(3) with the geometric controller's gains, under a collective
thrust that either holds the setpoint's height or is the setpoint's thrust (a command fraction per motor,
through the airframe's thrust curve). All drones are computed at once; each drone takes its mode's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nanoswarm.firmware_bridge.virtual.commander import (XY_ATTITUDE, XY_BODY_VELOCITY, XY_POSITION, Z_POSITION,
                                                         Z_THRUST, Commander)
from nanoswarm.sim.controller import GeometricGains, geometric_control
from nanoswarm.sim.dynamics import (DroneState, action_for_thrust, commanded_thrust, motor_thrusts_for_wrench,
                                    rotation_matrix)
from nanoswarm.sim.params import GRAVITY, DroneParams

MIN_UP_Z = 0.5  # the collective thrust's tilt compensation stops at 60 degrees


@dataclass
class StockOutput:
    actions: torch.Tensor       # (N, 4) in [-1, 1]
    target_pos: np.ndarray      # (N, 3) position the drone is steered to (ctrltarget.x/y/z)
    target_vel: np.ndarray      # (N, 3) the setpoint's velocity, world frame (ctrltarget.vx/vy/vz)


@dataclass
class Reference:
    """What the stock controller flies, per drone (N rows): the commander's setpoint, with the supervisor's
    level-out and the app's position holds put in."""

    xy: np.ndarray
    z: np.ndarray
    pos: np.ndarray
    vel: np.ndarray
    roll: np.ndarray
    pitch: np.ndarray
    yaw_rate: np.ndarray
    thrust: np.ndarray

    @staticmethod
    def of(commander: Commander, level_out: np.ndarray) -> "Reference":
        """The commander's setpoints; levelling out flies roll = pitch = yaw rate = 0 and keeps the height mode."""
        still = np.where(level_out, 0.0, 1.0)
        return Reference(xy=np.where(level_out, XY_ATTITUDE, commander.xy), z=commander.z.copy(),
                         pos=commander.pos.copy(), vel=commander.vel.copy(), roll=commander.roll * still,
                         pitch=commander.pitch * still, yaw_rate=commander.yaw_rate * still,
                         thrust=commander.thrust.copy())

    def hold(self, rows: np.ndarray, positions: np.ndarray) -> None:
        """Hold `positions` (N, 3) on the drones `rows` (the app's HOLD and LAND outputs)."""
        self.xy = np.where(rows, XY_POSITION, self.xy)
        self.z = np.where(rows, Z_POSITION, self.z)
        self.pos = np.where(rows[:, None], positions, self.pos)
        self.vel = np.where(rows[:, None], 0.0, self.vel)


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.float32)


def _mask(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=bool))


def attitude_control(state: DroneState, roll: torch.Tensor, pitch: torch.Tensor, yaw_rate: torch.Tensor,
                     collective: torch.Tensor, params: DroneParams, gains: GeometricGains = GeometricGains()
                     ) -> torch.Tensor:
    """Actions (..., 4) that hold roll and pitch (rad, about body x and y, yaw kept) and turn at `yaw_rate`
    (rad/s) under a collective thrust (N)."""
    rot = rotation_matrix(state.quat)
    yaw = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])
    cr, sr, cp, sp, cy, sy = (torch.cos(roll), torch.sin(roll), torch.cos(pitch), torch.sin(pitch),
                              torch.cos(yaw), torch.sin(yaw))
    desired = torch.stack((cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr,
                           sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr,
                           -sp, cp * sr, cp * cr), dim=-1).reshape(*roll.shape, 3, 3)   # Rz(yaw) Ry(pitch) Rx(roll)
    skew = desired.transpose(-1, -2) @ rot - rot.transpose(-1, -2) @ desired
    rot_error = 0.5 * torch.stack((skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]), dim=-1)
    rate_error = state.omega - torch.stack((torch.zeros_like(yaw_rate), torch.zeros_like(yaw_rate), yaw_rate), -1)
    inertia = params.inertia
    torque = (inertia * (-gains.attitude * rot_error - gains.rates * rate_error)
              + torch.linalg.cross(state.omega, inertia * state.omega))
    thrusts = motor_thrusts_for_wrench(collective.clamp_min(0.0), torque, params)
    return action_for_thrust(thrusts.clamp_min(0.0), params)


def stock_control(estimate: DroneState, ref: Reference, params: DroneParams,
                  gains: GeometricGains = GeometricGains()) -> StockOutput:
    """Every drone's stock-controller actions for its reference."""
    pos = estimate.pos
    rot = rotation_matrix(estimate.quat)
    heading = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])
    ref_vel = _tensor(ref.vel)
    body_x, body_y = ref_vel[:, 0], ref_vel[:, 1]
    world_xy = torch.stack((torch.cos(heading) * body_x - torch.sin(heading) * body_y,
                            torch.sin(heading) * body_x + torch.cos(heading) * body_y), dim=-1)
    vel_xy = torch.where(_mask(ref.xy == XY_BODY_VELOCITY)[:, None], world_xy, ref_vel[:, :2])
    ref_pos = _tensor(ref.pos)
    holds_xy, holds_z = ref.xy == XY_POSITION, ref.z == Z_POSITION
    target_xy = torch.where(_mask(holds_xy)[:, None], ref_pos[:, :2], pos[:, :2])
    target_z = torch.where(_mask(holds_z), ref_pos[:, 2], pos[:, 2])
    target = torch.cat((target_xy, target_z[:, None]), dim=-1)
    velocity = torch.cat((vel_xy, ref_vel[:, 2:]), dim=-1)
    commanded = torch.cat((torch.where(_mask(holds_xy)[:, None], 0.0, vel_xy),
                           torch.where(_mask(holds_z), ref_vel[:, 2].clamp_max(0.0), ref_vel[:, 2])[:, None]), dim=-1)
    lead = gains.velocity / gains.position        # s: the goal offset that commands a velocity
    actions = geometric_control(estimate, target + commanded * lead, params, gains)
    attitude_rows = ref.xy == XY_ATTITUDE
    if attitude_rows.any():   # most ticks fly positions only: the attitude loop is skipped then
        climb = gains.velocity * ((target_z - pos[:, 2]) / lead + commanded[:, 2] - estimate.vel[:, 2])
        up_z = rot[..., 2, 2].clamp_min(MIN_UP_Z)
        holding = params.mass * (GRAVITY + climb.clamp(-0.5 * GRAVITY, GRAVITY)) / up_z
        fraction = _tensor(ref.thrust)
        given = commanded_thrust((2.0 * fraction - 1.0)[:, None].expand(-1, 4), params).sum(-1)
        collective = torch.where(_mask(ref.z == Z_THRUST), given, holding)
        attitude_actions = attitude_control(estimate, _tensor(ref.roll), _tensor(ref.pitch),
                                            _tensor(ref.yaw_rate), collective, params, gains)
        actions = torch.where(_mask(attitude_rows)[:, None], attitude_actions, actions)
    return StockOutput(actions=actions, target_pos=target.numpy().astype(np.float64),
                       target_vel=velocity.numpy().astype(np.float64))
