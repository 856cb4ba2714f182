"""Specification of the geometric controller's inner loops (nanoswarm.sim.controller): what it gives each axis
when the motors cannot give everything. Its flight on whole tasks is specified where it teaches
(tests/test_kickstart.py) and avoids (tests/test_avoidance.py)."""

from __future__ import annotations

import math

import torch

from nanoswarm.sim.controller import MAX_YAW_ERROR, GeometricGains, velocity_control
from nanoswarm.sim.dynamics import body_wrench, commanded_thrust, quat_from_rotvec, quat_multiply, rotation_matrix
from nanoswarm.sim.params import GRAVITY, nominal_drone_params

DT = 0.002


def attitude(yaw: torch.Tensor, tilt_about_body_x: float) -> torch.Tensor:
    """Rotation matrices (n, 3, 3): heading `yaw` (n,) about world z, then tilted about the body x axis."""
    n = yaw.shape[0]
    heading = quat_from_rotvec(torch.stack((torch.zeros(n), torch.zeros(n), yaw), dim=-1))
    tilt = quat_from_rotvec(torch.tensor([[tilt_about_body_x, 0.0, 0.0]]).expand(n, 3))
    return rotation_matrix(quat_multiply(heading, tilt))


def wrench(quad, rot: torch.Tensor, climb: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Collective (n,) and body torque (n, 3) the controller's motor commands deliver, at rest and asked to
    climb at `climb` m/s."""
    n = rot.shape[0]
    params = nominal_drone_params(quad, n, DT)
    desired = torch.tensor([[0.0, 0.0, climb]]).expand(n, 3)
    actions = velocity_control(desired, torch.zeros(n, 3), rot, torch.zeros(n, 3), params)
    return body_wrench(commanded_thrust(actions, params), params)


def test_the_tilt_response_does_not_depend_on_the_heading(quad):
    """Tilted 20 degrees with the heading 0, 86 or 178 degrees off: the same roll and pitch torque (against
    heading +x, the shortest way to 178 degrees off runs through a flip about a horizontal axis), and a yaw
    torque that saturates with the heading error."""
    yaw = torch.tensor([0.0, 1.5, 3.1])
    _, torque = wrench(quad, attitude(yaw, math.radians(20.0)), climb=0.0)
    torch.testing.assert_close(torque[1:, :2], torque[:1, :2].expand(2, 2), rtol=1e-4, atol=1e-9)
    assert float(torque[0, 0]) < 0.0                        # rights the tilt about body x
    assert abs(float(torque[0, 2])) < 1e-9 < -float(torque[1, 2])
    torch.testing.assert_close(torque[2, 2], torque[1, 2], rtol=1e-4, atol=0.0)   # both past MAX_YAW_ERROR
    assert MAX_YAW_ERROR < 1.5


def test_yaw_gets_only_the_thrust_the_motors_have_left(quad):
    """Asked to climb at full thrust, tilted and with its heading off, a drone keeps every bit of the roll torque
    it gets at hover and all the collective the motors have left, and gives up yaw; hovering, it yaws."""
    rot = attitude(torch.tensor([1.0, 1.0]), math.radians(20.0))
    hover_collective, hover_torque = wrench(quad, rot[:1], climb=0.0)
    climb_collective, climb_torque = wrench(quad, rot[1:], climb=5.0)
    torch.testing.assert_close(climb_torque[:, :2], hover_torque[:, :2], rtol=1e-4, atol=1e-9)
    assert abs(float(climb_torque[0, 2])) < 1e-9 < abs(float(hover_torque[0, 2]))
    # hovering: the weight along the thrust axis; climbing: the most the motors give beside the roll torque
    # (two motors at full thrust, two lower by the roll split), though the climb asks for twice the weight
    torch.testing.assert_close(hover_collective, torch.tensor([quad.mass * GRAVITY * math.cos(math.radians(20.0))]))
    roll_split = climb_torque[0, 0].abs() / quad.rotor_xy
    torch.testing.assert_close(climb_collective[0], 4 * quad.thrust_max - roll_split)
    assert GeometricGains().velocity * 5.0 >= GRAVITY > (4 * quad.thrust_max / quad.mass - GRAVITY)
