"""What the virtual drones' logs read: one row per drone, refreshed every control tick.

Values are stored in the firmware's units and conventions, so that the log TOC only names and types them:
stateEstimate roll/pitch/yaw in degrees with the firmware's legacy inverted pitch, gyro in deg/s,
accelerations in g, motor commands 0-65535. Positions and velocities are in the world frame (m, m/s).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nanoswarm.sim.dynamics import rotation_matrix
from nanoswarm.sim.params import GRAVITY

MOTOR_FULL = 65535.0


class Telemetry:
    def __init__(self, n: int):
        self.pos = np.zeros((n, 3))
        self.vel = np.zeros((n, 3))
        self.acc_g = np.zeros((n, 3))        # world acceleration, in g
        self.body_vel = np.zeros((n, 3))
        self.quat = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))  # (w, x, y, z)
        self.rpy_deg = np.zeros((n, 3))      # roll, firmware pitch (inverted), yaw
        self.up_z = np.ones(n)               # up component of the body z axis
        self.gyro_deg = np.zeros((n, 3))
        self.pos_var = np.zeros(n)
        self.vel_var = np.zeros(n)
        self.motors = np.zeros((n, 4))       # 0..65535 per motor
        self.target_pos = np.zeros((n, 3))
        self.target_vel = np.zeros((n, 3))
        self.info = np.zeros(n, dtype=np.int64)   # supervisor.info
        self.vbat = np.zeros(n)
        self.pm_state = np.zeros(n, dtype=np.int64)
        self.battery_level = np.zeros(n)          # percent
        self.ext_pos = np.zeros((n, 3))      # last external position received (locSrv)
        self.ext_quat = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))  # last external attitude, (x, y, z, w)

    def record_estimate(self, pos: torch.Tensor, vel: torch.Tensor, quat: torch.Tensor, omega: torch.Tensor,
                        pos_var: np.ndarray, vel_var: np.ndarray, dt: float) -> None:
        rot = rotation_matrix(quat)
        new_vel = vel.double().numpy()
        self.acc_g = (new_vel - self.vel) / (dt * GRAVITY)
        self.pos, self.vel = pos.double().numpy(), new_vel
        self.body_vel = (rot.transpose(-1, -2) @ vel.unsqueeze(-1)).squeeze(-1).double().numpy()
        self.quat = quat.double().numpy()
        r = rot.double().numpy()
        roll = np.arctan2(r[:, 2, 1], r[:, 2, 2])
        pitch = np.arcsin(np.clip(-r[:, 2, 0], -1.0, 1.0))  # about body y (left): positive tilts the nose down
        yaw = np.arctan2(r[:, 1, 0], r[:, 0, 0])
        self.rpy_deg = np.degrees(np.stack([roll, -pitch, yaw], axis=1))
        self.up_z = r[:, 2, 2]
        self.gyro_deg = omega.double().numpy() * (180.0 / math.pi)
        self.pos_var, self.vel_var = pos_var, vel_var

    def record_motors(self, actions: torch.Tensor) -> None:
        self.motors = ((actions.double().numpy() + 1.0) * 0.5) * MOTOR_FULL
