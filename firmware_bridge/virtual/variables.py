"""The virtual Crazyflie's log and parameter tables, under the firmware's names and types.

Users' scripts find what they read and set on a real Crazyflie: the state estimate (stateEstimate.*,
stateEstimateZ.*, kalman.*), battery (pm.*), supervisor and system state (supervisor.info, sys.*), attitude,
gyro and motors (stabilizer.*, gyro.*, motor.m1-m4), the controller's target (ctrltarget.*), the last
external position received (locSrv.*), the parameters that change what the drone does
(stabilizer.controller and stop, kalman.resetEstimation, pm.lowVoltage, supervisor.tmblChckEn) and two that
scripts set and that change nothing here, as stabilizer.estimator (the estimate is always the simulator's)
and commander.enHighLevel (the firmware, too, always runs the high-level commander); and, with a policy, the
app's nanoswarm.* group, read and written in the app's own memory (nsw_virtual.c mirrors
nanoswarm_controller.c's table). Every table is one list for all drones; readers and writers take the
drone's index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from nanoswarm.firmware_bridge.virtual.onboard import (VARIABLE_COMMAND_PARAM, VARIABLE_LOG, AppVariable,
                                                       OnboardApps)
from nanoswarm.firmware_bridge.virtual.telemetry import Telemetry
from nanoswarm.firmware_bridge.virtual.toc import CType, Variable

CONTROLLER_AUTO, CONTROLLER_OUT_OF_TREE = 0, 6   # stabilizer.controller values (the app is out-of-tree)
ESTIMATOR_KALMAN = 2
LOW_VOLTAGE_V = 3.2                              # pm.lowVoltage default (PM_BAT_LOW_VOLTAGE)

Hook = Callable[[int, float], None]
CTYPES = {"c_ubyte": CType.UINT8, "c_ushort": CType.UINT16, "c_uint": CType.UINT32, "c_float": CType.FLOAT}


@dataclass(frozen=True)
class Param:
    group: str
    name: str
    ctype: CType
    default: float
    on_write: Hook | None = None   # called after a write, with the drone and its new value


class ParamValues:
    """The Python-side parameters of N drones: one array per parameter, which the swarm reads in bulk."""

    def __init__(self, n: int, params: list[Param]):
        self.params = params
        self.values = {f"{p.group}.{p.name}": np.full(n, p.default, dtype=np.float64) for p in params}

    def __getitem__(self, full_name: str) -> np.ndarray:
        return self.values[full_name]

    def variables(self) -> list[Variable]:
        def writer(array: np.ndarray, hook: Hook | None) -> Callable[[int, float], None]:
            def write(drone: int, value: float) -> None:
                array[drone] = value
                if hook is not None:
                    hook(drone, value)
            return write

        return [Variable(p.group, p.name, p.ctype, self.values[f"{p.group}.{p.name}"].__getitem__,
                         writer(self.values[f"{p.group}.{p.name}"], p.on_write)) for p in self.params]


def firmware_params(has_app: bool, reset_estimation: Hook) -> list[Param]:
    """The Python-side parameters; the drone boots with the app selected when it has one (the app's README
    advises storing stabilizer.controller = 6 persistently)."""
    return [
        Param("stabilizer", "controller", CType.UINT8, CONTROLLER_OUT_OF_TREE if has_app else CONTROLLER_AUTO),
        Param("stabilizer", "estimator", CType.UINT8, ESTIMATOR_KALMAN),
        Param("stabilizer", "stop", CType.UINT8, 0),
        Param("commander", "enHighLevel", CType.UINT8, 1),
        Param("kalman", "resetEstimation", CType.UINT8, 0, reset_estimation),
        Param("pm", "lowVoltage", CType.FLOAT, LOW_VOLTAGE_V),
        Param("supervisor", "tmblChckEn", CType.UINT8, 1),
    ]


def app_variables(apps: OnboardApps, command_set: Hook) -> tuple[list[Variable], list[Variable]]:
    """The app's nanoswarm.* logs and parameters, read and written in each drone's app memory."""
    logs, params = [], []

    def reader(v: AppVariable) -> Callable[[int], float]:
        return lambda drone: apps.variable(drone, v).value

    def writer(v: AppVariable) -> Callable[[int, float], None]:
        def write(drone: int, value: float) -> None:
            apps.variable(drone, v).value = value
            if v.kind == VARIABLE_COMMAND_PARAM:
                command_set(drone, value)
        return write

    for v in apps.variables:
        ctype = CTYPES[v.ctype.__name__]
        if v.kind == VARIABLE_LOG:
            logs.append(Variable("nanoswarm", v.name, ctype, reader(v)))
        else:
            params.append(Variable("nanoswarm", v.name, ctype, reader(v), writer(v)))
    return logs, params


def _columns(group: str, names: str, ctype: CType, source: Callable[[], np.ndarray], scale: float = 1.0
             ) -> list[Variable]:
    """Variables `group.name` reading column j of the (N, k) array `source()` for the j-th name."""
    return [Variable(group, name, ctype, lambda drone, j=j: scale * source()[drone, j])
            for j, name in enumerate(names.split())]


def log_variables(t: Telemetry) -> list[Variable]:
    f, i16 = CType.FLOAT, CType.INT16
    xyzw = lambda: t.quat[:, [1, 2, 3, 0]]          # noqa: E731 (the firmware's component order)
    return [
        *_columns("stateEstimate", "x y z", f, lambda: t.pos),
        *_columns("stateEstimate", "vx vy vz", f, lambda: t.vel),
        *_columns("stateEstimate", "ax ay az", f, lambda: t.acc_g),
        *_columns("stateEstimate", "roll pitch yaw", f, lambda: t.rpy_deg),
        *_columns("stateEstimate", "qx qy qz qw", f, xyzw),
        *_columns("stateEstimateZ", "x y z", i16, lambda: t.pos, 1000.0),
        *_columns("stateEstimateZ", "vx vy vz", i16, lambda: t.vel, 1000.0),
        *_columns("kalman", "stateX stateY stateZ", f, lambda: t.pos),
        *_columns("kalman", "statePX statePY statePZ", f, lambda: t.body_vel),
        *_columns("kalman", "varX varY varZ", f, lambda: np.repeat(t.pos_var[:, None], 3, axis=1)),
        *_columns("kalman", "varPX varPY varPZ", f, lambda: np.repeat(t.vel_var[:, None], 3, axis=1)),
        *_columns("kalman", "q0 q1 q2 q3", f, lambda: t.quat),
        Variable("pm", "vbat", f, lambda d: t.vbat[d]),
        Variable("pm", "vbatMV", CType.UINT16, lambda d: round(1000.0 * t.vbat[d])),
        Variable("pm", "state", CType.INT8, lambda d: t.pm_state[d]),
        Variable("pm", "batteryLevel", CType.UINT8, lambda d: t.battery_level[d]),
        Variable("supervisor", "info", CType.UINT16, lambda d: t.info[d]),
        Variable("sys", "canfly", CType.UINT8, lambda d: (t.info[d] >> 3) & 1),
        Variable("sys", "isFlying", CType.UINT8, lambda d: (t.info[d] >> 4) & 1),
        Variable("sys", "isTumbled", CType.UINT8, lambda d: (t.info[d] >> 5) & 1),
        *_columns("stabilizer", "roll pitch yaw", f, lambda: t.rpy_deg),
        Variable("stabilizer", "thrust", f, lambda d: t.motors[d].mean()),
        *_columns("gyro", "x y z", f, lambda: t.gyro_deg),
        *_columns("motor", "m1 m2 m3 m4", CType.UINT32, lambda: t.motors),
        *_columns("ctrltarget", "x y z", f, lambda: t.target_pos),
        *_columns("ctrltarget", "vx vy vz", f, lambda: t.target_vel),
        *_columns("locSrv", "x y z", f, lambda: t.ext_pos),
        *_columns("locSrv", "qx qy qz qw", f, lambda: t.ext_quat),
    ]
