"""One swarm environment as a pybullet world, and the physics substep that drives a batch of them.

Each `BulletWorld` is its own DIRECT client (no GUI) holding one room: floor, four walls and ceiling as
planes, M Crazyflies loaded from the generated URDF, and the columns of the current episode as static
cylinders. pybullet integrates the rigid bodies and detects and resolves every contact; we supply only
what pybullet does not model: the motors (`dynamics.motor_response`, the same lag and noise as the torch
simulator) and the rotor forces, applied per rotor at its position in the body frame, plus the yaw
reaction torque.

pybullet's API addresses one body per call, so applying forces and reading states loops over the drones
in Python; everything else (motors, frames, contacts into tensors) is done on whole batches.

Conventions at this boundary (the only place they differ): pybullet quaternions are (x, y, z, w), ours
(w, x, y, z); pybullet angular velocity is in the world frame, ours (body rates) in the body frame.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pybullet
import torch

from nanoswarm.sim.config import CONTACT_FRICTION
from nanoswarm.sim.dynamics import (MOTOR_X_SIGN, MOTOR_Y_SIGN, MOTOR_YAW_SIGN, DroneState, motor_response,
                                    rotation_matrix)
from nanoswarm.sim.params import GRAVITY, DroneParams
from nanoswarm.sim.tensor_struct import as_component_major, component_major
from nanoswarm.sim.bullet.urdf import LOAD_FLAGS


class Kind(Enum):
    FLOOR = "floor"
    WALL = "wall"            # the four walls and the ceiling
    COLUMN = "column"


@dataclass
class Touching:
    """The contacts of one world after a physics step (drone indices 0..M-1)."""

    drone_pairs: set[tuple[int, int]] = field(default_factory=set)  # (i, j) with i < j
    columns: set[tuple[int, int]] = field(default_factory=set)      # (drone, column body id)
    walls: set[int] = field(default_factory=set)
    floor: set[int] = field(default_factory=set)


class BulletWorld:
    """A room of `room` = (x, y, z) metres centred on x = y = 0 with its floor at z = 0, and M drones."""

    def __init__(self, urdf: Path, drones: int, room: tuple[float, float, float], physics_dt: float,
                 restitution: float, friction: float = CONTACT_FRICTION):
        self.client = pybullet.connect(pybullet.DIRECT)
        weakref.finalize(self, pybullet.disconnect, physicsClientId=self.client)
        self._call(pybullet.setGravity, 0.0, 0.0, -GRAVITY)
        self._call(pybullet.setTimeStep, physics_dt)
        # Bullet multiplies the materials of two touching bodies: each gets the square root of a contact's value.
        self._material = {"restitution": math.sqrt(restitution), "lateralFriction": math.sqrt(friction)}
        self._kind: dict[int, Kind] = {}
        hx, hy, hz = 0.5 * room[0], 0.5 * room[1], room[2]
        planes = [((0, 0, 1), (0, 0, 0), Kind.FLOOR), ((0, 0, -1), (0, 0, hz), Kind.WALL),
                  ((-1, 0, 0), (hx, 0, 0), Kind.WALL), ((1, 0, 0), (-hx, 0, 0), Kind.WALL),
                  ((0, -1, 0), (0, hy, 0), Kind.WALL), ((0, 1, 0), (0, -hy, 0), Kind.WALL)]
        for normal, position, kind in planes:
            shape = self._call(pybullet.createCollisionShape, pybullet.GEOM_PLANE, planeNormal=normal)
            self._add_static(self._call(pybullet.createMultiBody, 0.0, shape, basePosition=position), kind)
        self.drones = [self._call(pybullet.loadURDF, str(urdf), (0.0, 0.0, 1.0 + i), flags=LOAD_FLAGS)
                       for i in range(drones)]
        self._drone_index = {body: i for i, body in enumerate(self.drones)}
        for body in self.drones:
            # URDF multibodies default to 0.04 linear and angular damping, and bodies at rest may sleep.
            self._call(pybullet.changeDynamics, body, -1, linearDamping=0.0, angularDamping=0.0,
                       activationState=pybullet.ACTIVATION_STATE_DISABLE_SLEEPING, **self._material)
        self._rotor_sign = np.array([MOTOR_X_SIGN, MOTOR_Y_SIGN])            # (2, 4)
        self._yaw_sign = np.array(MOTOR_YAW_SIGN)
        self._columns: list[int] = []
        self._column_key: tuple | None = None
        self._height = hz

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn` on this world's client (pybullet's calls name their client by a keyword)."""
        return fn(*args, **kwargs, physicsClientId=self.client)

    def _add_static(self, body: int, kind: Kind) -> None:
        self._call(pybullet.changeDynamics, body, -1, **self._material)
        self._kind[body] = kind

    # ---------------------------------------------------------------------------------------- state
    def set_drones(self, state: DroneState, mass: torch.Tensor, inertia: torch.Tensor) -> None:
        """Put every drone in `state` ((M, ...) tensors, our conventions) with its mass (M,) and inertia (M, 3)."""
        omega_world = (rotation_matrix(state.quat) @ state.omega.unsqueeze(-1)).squeeze(-1)
        xyzw = state.quat[:, [1, 2, 3, 0]]
        for i, body in enumerate(self.drones):
            self._call(pybullet.resetBasePositionAndOrientation, body, state.pos[i].tolist(), xyzw[i].tolist())
            self._call(pybullet.resetBaseVelocity, body, state.vel[i].tolist(), omega_world[i].tolist())
            self._call(pybullet.changeDynamics, body, -1, mass=float(mass[i]),
                       localInertiaDiagonal=inertia[i].tolist())

    def read_drones(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Position, attitude (w, x, y, z), velocity and body rates of the drones, (M, ...) float64 tensors."""
        poses = [self._call(pybullet.getBasePositionAndOrientation, body) for body in self.drones]
        speeds = [self._call(pybullet.getBaseVelocity, body) for body in self.drones]
        pos = torch.tensor([p for p, _ in poses], dtype=torch.float64)
        quat = torch.tensor([q for _, q in poses], dtype=torch.float64)[:, [3, 0, 1, 2]]
        vel = torch.tensor([v for v, _ in speeds], dtype=torch.float64)
        omega_world = torch.tensor([w for _, w in speeds], dtype=torch.float64)
        omega = (rotation_matrix(quat).transpose(-1, -2) @ omega_world.unsqueeze(-1)).squeeze(-1)
        return pos, quat, vel, omega

    def set_columns(self, centres: torch.Tensor, radius: float) -> None:
        """Floor-to-ceiling columns at `centres` (n, 2) of radius `radius`, replacing the previous ones."""
        key = (tuple(map(tuple, centres.tolist())), float(radius))
        if key == self._column_key:
            return
        for body in self._columns:
            self._call(pybullet.removeBody, body)
            del self._kind[body]
        self._columns = []
        if len(centres):
            shape = self._call(pybullet.createCollisionShape, pybullet.GEOM_CYLINDER, radius=float(radius),
                               height=self._height)
            positions = [(x, y, 0.5 * self._height) for x, y in centres.tolist()]
            self._columns = list(self._call(pybullet.createMultiBody, 0.0, shape, batchPositions=positions))
            for body in self._columns:
                self._add_static(body, Kind.COLUMN)
        self._column_key = key

    # -------------------------------------------------------------------------------------- physics
    def push(self, thrust: np.ndarray, rotor_xy: np.ndarray, torque_to_thrust: np.ndarray,
             force: np.ndarray | None) -> None:
        """Apply rotor thrusts (M, 4) along body z at the rotors of arm offset rotor_xy (M,), the yaw reaction
        torque, and an optional world force (M, 3) at the centre of mass; pybullet clears them every step."""
        rotors = (rotor_xy[:, None, None] * self._rotor_sign[None]).tolist()   # (M, 2, 4)
        yaw = (torque_to_thrust * (thrust @ self._yaw_sign)).tolist()
        for i, body in enumerate(self.drones):
            rx, ry = rotors[i]
            for m, t in enumerate(thrust[i].tolist()):
                self._call(pybullet.applyExternalForce, body, -1, (0.0, 0.0, t), (rx[m], ry[m], 0.0),
                           pybullet.LINK_FRAME)
            self._call(pybullet.applyExternalTorque, body, -1, (0.0, 0.0, yaw[i]), pybullet.LINK_FRAME)
            if force is not None and force[i].any():
                centre = self._call(pybullet.getBasePositionAndOrientation, body)[0]
                self._call(pybullet.applyExternalForce, body, -1, force[i].tolist(), centre, pybullet.WORLD_FRAME)

    def step(self) -> Touching:
        """One physics step; returns what touched what in it, as pybullet's collision detection says.

        pybullet also reports points up to 2 cm apart, which its solver treats as speculative contacts: it
        stops bodies that would close such a gap within the step, a few millimetres short of touching. A
        contact is therefore a point where the solver pushed (normal force > 0) or the shapes overlap.
        """
        self._call(pybullet.stepSimulation)
        touching = Touching()
        for contact in self._call(pybullet.getContactPoints):
            if contact[9] <= 0.0 and contact[8] > 0.0:
                continue
            a, b = self._drone_index.get(contact[1]), self._drone_index.get(contact[2])
            if a is not None and b is not None:
                touching.drone_pairs.add((min(a, b), max(a, b)))
                continue
            drone, other = (a, contact[2]) if a is not None else (b, contact[1])
            kind = self._kind.get(other)
            if drone is None or kind is None:
                continue
            if kind is Kind.COLUMN:
                touching.columns.add((drone, other))
            elif kind is Kind.WALL:
                touching.walls.add(drone)
            else:
                touching.floor.add(drone)
        return touching


def bullet_substep(worlds: Sequence[BulletWorld], drones: DroneState, cmd: torch.Tensor, params: DroneParams,
                   dt: float, noise: torch.Tensor | None, force: torch.Tensor | None
                   ) -> tuple[DroneState, list[Touching]]:
    """One physics step of E worlds: the motors respond to the commands (E, M, 4) as in the torch simulator,
    their thrusts drive pybullet. Returns `drones` with the new motor states (the rigid-body state stays in
    pybullet; `read_state` fetches it) and each world's contacts."""
    thrust, motor_noise, actual = motor_response(drones, cmd, params, dt, noise)
    rotor = component_major(*actual).double().numpy()
    arm, ratio = params.rotor_xy.double().numpy(), params.torque_to_thrust.double().numpy()
    extra = force.double().numpy() if force is not None else None
    touching = []
    for e, world in enumerate(worlds):
        world.push(rotor[e], arm[e], ratio[e], extra[e] if extra is not None else None)
        touching.append(world.step())
    return drones.replace(thrust=component_major(*thrust), motor_noise=component_major(*motor_noise)), touching


def read_state(worlds: Sequence[BulletWorld], motors: DroneState) -> DroneState:
    """The drones (E, M, ...) as pybullet holds them, in float32 and our conventions, with the motor states
    of `motors`."""
    pos, quat, vel, omega = (as_component_major(torch.stack(parts).float())
                             for parts in zip(*(world.read_drones() for world in worlds)))
    return motors.replace(pos=pos, vel=vel, quat=quat, omega=omega)
