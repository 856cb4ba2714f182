"""Laptop-in-the-loop: the exported policy runs on the laptop (onnxruntime) and flies a simulated twin of
each drone; the drone's own controller tracks the twin.

Why a twin, rather than sending the policy's motor commands: an action is a motor force for the next
10 ms, and a radio round trip (telemetry up, setpoint down) takes tens of milliseconds with jitter, so raw
actions would arrive late and in bursts, and a lost packet would leave a motor command standing. Instead,
every bridge cycle:
1. each twin is re-anchored to its drone's latest telemetry (position, velocity, attitude quaternion and
   gyro; the motor state, which is not logged, carries over from the twin's previous cycle);
2. the twins are rolled out together for `horizon_s` with the simulator's physics (`physics_step`) and the
   policy on observations built with the project's observation definition (`build_observation`, nearest
   neighbours among the twins; a missing neighbour is observed `absent_distance` ahead along +x, keeping
   pace, as the onboard app does);
3. each twin's state at the horizon (position, velocity, acceleration, attitude, body rates) is streamed
   to its drone as a full-state setpoint, which the firmware's position controller tracks; its watchdog
   levels a drone whose setpoints stop for 0.5 s and cuts its motors after 2 s.
So the drone flies what the policy would fly from where the drone really is, with the laptop's latency
absorbed by the horizon. It is meant for a few drones and for debugging a policy before flashing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from nanoswarm.export.crazyflie_app import check_training_curve
from nanoswarm.export.errors import CrazyflieAppError
from nanoswarm.export.onnx_export import META_LAYOUT
from nanoswarm.firmware_bridge.errors import PolicyError
from nanoswarm.firmware_bridge.mission import LaptopSettings
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.dynamics import DroneState, commanded_thrust, hover_thrust, physics_step, rotation_matrix
from nanoswarm.sim.interactions import nearest_neighbors, pairwise
from nanoswarm.sim.observation import OBSTACLE_POINTS, ObservationLayout, build_observation
from nanoswarm.sim.params import load_params, nominal_drone_params
from nanoswarm.sim.tensor_struct import select


@dataclass(frozen=True)
class TwinSetpoint:
    """The twins' states at the horizon, (M, ...) each, SI units; quat (w, x, y, z)."""

    pos: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    quat: np.ndarray
    omega: np.ndarray


def observe_twins(state: DroneState, goals: torch.Tensor, layout: ObservationLayout, absent_distance: float,
                  sense_range: float) -> torch.Tensor:
    """Observations (M, layout.size) of M twins flying together, neighbours padded to K when M - 1 < K."""
    pos, vel = state.pos.unsqueeze(0), state.vel.unsqueeze(0)
    k = layout.num_neighbors
    seen = min(k, pos.shape[1] - 1)
    _, nb_pos, nb_vel = nearest_neighbors(pairwise(pos, vel), pos, vel, seen)
    missing = k - seen
    if missing:
        absent = torch.zeros(1, pos.shape[1], missing, 3)
        absent[..., 0] = absent_distance
        nb_pos, nb_vel = torch.cat((nb_pos, absent), 2), torch.cat((nb_vel, torch.zeros_like(absent)), 2)
    grid = torch.full((1, pos.shape[1], OBSTACLE_POINTS), float(sense_range))
    obs = build_observation(pos - goals.unsqueeze(0), vel, rotation_matrix(state.quat).unsqueeze(0),
                            state.omega.unsqueeze(0), pos[..., 2:3], nb_pos, nb_vel, grid)
    return obs[0]


class LaptopPolicy:
    """The exported policy (`policy_dir/policy.onnx`) and the twins it flies."""

    def __init__(self, policy_dir: Path, settings: LaptopSettings, drones: int):
        model_path = Path(policy_dir) / "policy.onnx"
        if not model_path.is_file():
            raise PolicyError(f"{model_path} not found; laptop mode flies an exported policy: run "
                                    "`nanoswarm export CHECKPOINT --out DIR` and pass --policy DIR")
        metadata = {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}
        if META_LAYOUT not in metadata:
            raise PolicyError(f"{model_path} carries no observation layout ({META_LAYOUT}); export it with "
                                    "`nanoswarm export`")
        try:
            self.layout = ObservationLayout.from_dict(json.loads(metadata[META_LAYOUT]))
            quad = load_params(settings.params)
            check_training_curve(Path(policy_dir), quad, settings.params)
        except (ValueError, CrazyflieAppError) as err:
            raise PolicyError(f"{model_path}: {err}") from None
        options = ort.SessionOptions()
        # One thread that does not spin between calls: the model is tiny, and idle spinning would take the
        # cores that cflib's threads need to keep the links serviced.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.settings = settings
        env = EnvConfig()
        self.control_dt = 1.0 / env.control_hz
        self.substeps = env.substeps
        self.physics_dt = self.control_dt / self.substeps
        self.steps = max(1, round(settings.horizon_s / self.control_dt))
        self.params = nominal_drone_params(quad, drones, self.physics_dt)
        self.thrust = hover_thrust(self.params).clone()   # the twins' motor states, carried between cycles

    def actions(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: obs.numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)

    def rollout(self, rows: np.ndarray, pos: np.ndarray, vel: np.ndarray, quat: np.ndarray, omega: np.ndarray,
                goals: np.ndarray, carry_s: float) -> TwinSetpoint:
        """Roll the twins of drones `rows` (indices into the swarm) out from their measured states (M, ...)
        towards `goals` (M, 3); the motor state `carry_s` into the rollout is kept for the next cycle."""
        index = torch.as_tensor(rows, dtype=torch.long)
        params = select(self.params, index)
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        q = f32(quat)
        state = DroneState(pos=f32(pos), vel=f32(vel), quat=q / q.norm(dim=-1, keepdim=True), omega=f32(omega),
                           thrust=self.thrust[index].clone(), motor_noise=torch.zeros(len(rows), 4))
        target = f32(goals)
        carry_step = min(self.steps, max(1, round(carry_s / self.control_dt))) - 1
        previous_vel = state.vel
        for step in range(self.steps):
            command = commanded_thrust(self.actions(observe_twins(state, target, self.layout,
                                                                  self.settings.absent_distance,
                                                                  self.settings.obstacle_sense_range)), params)
            previous_vel = state.vel
            for _ in range(self.substeps):
                state = physics_step(state, command, params, self.physics_dt, drag=True)
            if step == carry_step:
                self.thrust[index] = state.thrust
        acc = (state.vel - previous_vel) / self.control_dt
        return TwinSetpoint(pos=state.pos.numpy(), vel=state.vel.numpy(), acc=acc.numpy(), quat=state.quat.numpy(),
                            omega=state.omega.numpy())
