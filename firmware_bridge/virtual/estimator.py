"""The virtual drones' state estimate: the simulated state seen through the simulator's sensor noise.

The estimate is what the onboard code and the logs see: position, velocity, attitude and body rates of
each drone plus independent Gaussian errors with the standard deviations the policies were trained with
(`NoiseConfig`), drawn the way the simulator draws them (`Sensing`). There is no filter to run, but the
estimator reports a Kalman-like position and velocity variance: the sensor variance, and after
`kalman.resetEstimation` a large initial variance that decays as a converging filter's would, so that
code waiting for convergence (cflib's reset_estimator, the app's maxPosStd check) behaves as on a drone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nanoswarm.sim.config import NoiseConfig
from nanoswarm.sim.dynamics import DroneState, quat_from_rotvec, quat_multiply
from nanoswarm.sim.step import Sensing

RESET_VARIANCE = 1.0   # m^2 and (m/s)^2 right after a reset (a 1 m standard deviation)
CONVERGENCE_S = 0.25   # s, time constant of the variance's decay after a reset


@dataclass
class Estimate:
    drones: DroneState         # (N rows) estimated position, velocity, attitude (w, x, y, z) and body rates
    position_variance: np.ndarray  # (N,) m^2, per axis
    velocity_variance: np.ndarray  # (N,) (m/s)^2, per axis


class Estimator:
    def __init__(self, n: int, noise: NoiseConfig, seed: int):
        self.sigma = (noise.position, noise.velocity, noise.attitude, noise.rates)
        self.generator = torch.Generator().manual_seed(seed)
        self.reset_at = np.full(n, -np.inf)
        self.n = n

    def reset(self, drone: int, now: float) -> None:
        """kalman.resetEstimation: the filter starts over, uncertain."""
        self.reset_at[drone] = now

    def estimate(self, truth: DroneState, now: float) -> Estimate:
        errors = Sensing.from_normals(torch.randn(self.n, 12, generator=self.generator), self.sigma)
        drones = truth.replace(pos=truth.pos + errors.position, vel=truth.vel + errors.velocity,
                               quat=quat_multiply(truth.quat, quat_from_rotvec(errors.attitude)),
                               omega=truth.omega + errors.rates)
        settled = np.exp(-(now - self.reset_at) / CONVERGENCE_S)
        pos_var, vel_var = self.sigma[0] ** 2, self.sigma[1] ** 2
        return Estimate(drones=drones, position_variance=pos_var + (RESET_VARIANCE - pos_var) * settled,
                        velocity_variance=vel_var + (RESET_VARIANCE - vel_var) * settled)
