"""The Crazyflie as a URDF, generated from a `hardware/params` set so that pybullet flies the same airframe.

One link, its centre of mass at the origin, body axes as in `sim.dynamics` (x forward, y left, z up):
- inertial: the set's mass and diagonal inertia (pybullet must be told to read them, see `LOAD_FLAGS`;
  by default it derives inertia from the collision shape);
- collision: a sphere of `collision_radius` (arm plus propeller), the contact geometry the torch
  simulator assumes, so that a contact in pybullet means the same thing as one in ours;
- visual: a flat body and four rotor disks at the set's rotor positions, for rendering only.
Rotor thrusts are not part of the model: the environment applies them as forces at the rotor positions.
"""

from __future__ import annotations

from pathlib import Path

import pybullet

from nanoswarm.sim.dynamics import MOTOR_X_SIGN, MOTOR_Y_SIGN
from nanoswarm.sim.params import QuadParams

LOAD_FLAGS = pybullet.URDF_USE_INERTIA_FROM_FILE
BODY_SIZE = (0.03, 0.03, 0.01)   # m, visual only: the Crazyflie's board and battery
ROTOR_DISK_HEIGHT = 0.002        # m, visual only


def crazyflie_urdf(params: QuadParams) -> str:
    """URDF text of the airframe `params` (SI units)."""
    ixx, iyy, izz = params.inertia
    prop = max(params.collision_radius - params.rotor_xy * 2 ** 0.5, 0.2 * params.rotor_xy)
    rotors = "\n".join(
        f'    <visual><origin xyz="{sx * params.rotor_xy} {sy * params.rotor_xy} 0"/>'
        f'<geometry><cylinder radius="{prop}" length="{ROTOR_DISK_HEIGHT}"/></geometry></visual>'
        for sx, sy in zip(MOTOR_X_SIGN, MOTOR_Y_SIGN))
    return f"""<?xml version="1.0"?>
<robot name="{params.name}">
  <link name="body">
    <inertial>
      <origin xyz="0 0 0"/>
      <mass value="{params.mass}"/>
      <inertia ixx="{ixx}" ixy="0" ixz="0" iyy="{iyy}" iyz="0" izz="{izz}"/>
    </inertial>
    <collision><geometry><sphere radius="{params.collision_radius}"/></geometry></collision>
    <visual><geometry><box size="{' '.join(str(s) for s in BODY_SIZE)}"/></geometry></visual>
{rotors}
  </link>
</robot>
"""


def write_urdf(params: QuadParams, folder: Path) -> Path:
    """Write the URDF of `params` into `folder` (pybullet loads URDFs from files only); returns its path."""
    path = folder / f"{params.name}.urdf"
    path.write_text(crazyflie_urdf(params))
    return path
