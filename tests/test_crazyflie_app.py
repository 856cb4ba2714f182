"""Specification of the Crazyflie app (export/crazyflie_app): the onboard observation equals the simulator's,
actions reach the motors through the simulator's thrust curve, stale or non-finite inputs fall back to the
stock PID, and the P2P and app-channel wire formats round-trip.

The app's C sources are compiled with the host's gcc against the firmware shim in export/crazyflie_app/shim
and driven through ctypes, with a small linear test policy written here to the policy.h contract (K = 2).
The simulator's own functions are the oracle; the same sources are also cross-compiled for the Cortex-M4.
"""

from __future__ import annotations

import ctypes
import json
import math
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from nanoswarm.export.codegen import generate_c
from nanoswarm.export.codegen.generate import layout_defines
from nanoswarm.export.crazyflie_app import (COMMAND_DISABLE, COMMAND_FLY, COMMAND_LAND, CrazyflieAppError,
                                            c_float, command_packet, selftest_observation, write_crazyflie_app)
from nanoswarm.export.host import onnxruntime_actions
from nanoswarm.export.onnx_export import action_metadata, export_onnx
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.dynamics import DroneState, commanded_thrust
from nanoswarm.sim.interactions import pairwise
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.obstacles import ObstacleGrid, distance_grid
from nanoswarm.sim.params import load_params, nominal_drone_params
from nanoswarm.sim.step import observe

SHIM = Path(__file__).resolve().parents[1] / "export" / "crazyflie_app" / "shim"
K = 2
LAYOUT = ObservationLayout(num_neighbors=K)
N_IN = LAYOUT.size
SENSE_RANGE = EnvConfig.obstacle_sense_range
P2P_PORT = 0
STATE = struct.Struct("<BBB3h3h")  # the P2P state packet of src/nsw_packets.h
MODES = {"IDLE": 0, "POLICY": 1, "HOLD": 2, "LAND": 3, "LANDED": 4}
FAULT_COMMAND, FAULT_STATE, FAULT_OBSERVATION, FAULT_ACTION, FAULT_SELF_TEST = 1, 2, 4, 8, 16
CONTROL_LEGACY, CONTROL_FORCE = 0, 2
LEVEL = (1.0, 0.0, 0.0, 0.0)
F = ctypes.POINTER(ctypes.c_float)


def policy_header(layout: ObservationLayout) -> str:
    """policy.h as the shared contract specifies it, with the generator's own layout macros for `layout`."""
    lines = ["#ifndef NANOSWARM_POLICY_H", "#define NANOSWARM_POLICY_H",
             f"#define NANOSWARM_POLICY_N_IN {layout.size}", "#define NANOSWARM_POLICY_N_OUT 4",
             *layout_defines(layout)]
    return "\n".join([*lines, "void nanoswarm_policy(const float *input, float *output);", "#endif", ""])


# A linear policy whose weights, bias and last input the tests can read and change through ctypes.
TEST_POLICY_C = """#include "policy.h"

float test_policy_weight[4][NANOSWARM_POLICY_N_IN] = {%s};
float test_policy_bias[4] = {%s};
float test_policy_last_input[NANOSWARM_POLICY_N_IN];
unsigned test_policy_calls;

void nanoswarm_policy(const float *input, float *output)
{
  test_policy_calls++;
  for (int i = 0; i < NANOSWARM_POLICY_N_IN; i++) {
    test_policy_last_input[i] = input[i];
  }
  for (int m = 0; m < 4; m++) {
    float acc = test_policy_bias[m];
    for (int i = 0; i < NANOSWARM_POLICY_N_IN; i++) {
      acc += test_policy_weight[m][i] * input[i];
    }
    output[m] = acc;
  }
}
"""


@dataclass(frozen=True)
class LinearPolicy:
    directory: Path
    weight: np.ndarray  # (4, N_IN) float32
    bias: np.ndarray    # (4,) float32

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.weight @ obs + self.bias


@pytest.fixture(scope="module")
def test_policy(tmp_path_factory: pytest.TempPathFactory) -> LinearPolicy:
    directory = tmp_path_factory.mktemp("policy")
    rng = np.random.default_rng(3)
    weight = (0.05 * rng.standard_normal((4, N_IN))).astype(np.float32)
    bias = np.array([0.1, -0.1, 0.2, 0.0], dtype=np.float32)
    rows = ", ".join("{" + ", ".join(c_float(w) for w in row) + "}" for row in weight)
    (directory / "policy.h").write_text(policy_header(LAYOUT))
    (directory / "policy.c").write_text(TEST_POLICY_C % (rows, ", ".join(c_float(b) for b in bias)))
    return LinearPolicy(directory, weight, bias)


@pytest.fixture(scope="module")
def app_dir(test_policy: LinearPolicy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_crazyflie_app(test_policy.directory, tmp_path_factory.mktemp("app"), policy=test_policy)


def build_app_library(app_dir: Path) -> Path:
    """The app's sources and the firmware shim as one host shared library."""
    library = app_dir / "libnanoswarm_app.so"
    sources = sorted(str(p) for p in (app_dir / "src").glob("*.c"))
    result = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wdouble-promotion", "-shared",
                             "-fPIC", f"-I{SHIM}", f"-I{app_dir / 'src'}", *sources, str(SHIM / "shim.c"), "-lm",
                             "-o", str(library)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return library


def cross_compile(app_dir: Path) -> None:
    """The app's own sources (policy.c is the code generator's to check), compiled for the Crazyflie's
    Cortex-M4F with every warning an error, against the policy.h and generated headers in `app_dir`."""
    for source in sorted(set((app_dir / "src").glob("*.c")) - {app_dir / "src" / "policy.c"}):
        result = subprocess.run(
            ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2",
             "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion", "-Wshadow", "-Wstrict-prototypes",
             "-Wmissing-prototypes", f"-I{SHIM}", f"-I{app_dir / 'src'}", "-c", str(source),
             "-o", str(app_dir / f"{source.stem}.o")], capture_output=True, text=True)
        assert result.returncode == 0, f"{source.name}:\n{result.stderr}"


@pytest.fixture(scope="module")
def app_library(app_dir: Path) -> Path:
    return build_app_library(app_dir)


def arr(values) -> ctypes.Array:
    values = [float(v) for v in values]
    return (ctypes.c_float * len(values))(*values)


class Firmware:
    """The app in its firmware shim, driven one stabilizer tick at a time. With the linear test policy,
    `weight`, `bias`, `last_input` and `policy_calls` reach into it."""

    def __init__(self, library: Path):
        self.lib = ctypes.CDLL(str(library))
        for name, args, result in (
                ("shim_tick", [F, F, F, F, ctypes.c_uint32, F], ctypes.c_int),
                ("shim_param_set", [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_double], ctypes.c_int),
                ("shim_log_read", [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_double)], ctypes.c_int),
                ("shim_set_time_us", [ctypes.c_uint64], None),
                ("shim_set_position_variance", [ctypes.c_float], None),
                ("shim_p2p_deliver", [ctypes.c_uint8, ctypes.c_char_p, ctypes.c_uint8], None),
                ("shim_p2p_sent", [ctypes.POINTER(ctypes.c_uint8), ctypes.c_char_p], ctypes.c_int),
                ("shim_appchannel_push", [ctypes.c_char_p, ctypes.c_uint32], None),
                ("shim_console", [], ctypes.c_char_p),
                ("shim_pid_calls", [], ctypes.c_int),
                ("shim_pid_setpoint", [F, F, ctypes.POINTER(ctypes.c_int)], None),
                ("controllerOutOfTreeTest", [], ctypes.c_bool),
                ("nsw_build_observation", [F, F, F, ctypes.c_int, ctypes.c_float, F], None),
                ("nsw_force_fraction", [ctypes.c_float], ctypes.c_float),
                ("nsw_pack_state", [ctypes.c_uint8, F, ctypes.c_char_p], ctypes.c_int),
                ("nsw_unpack_state", [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint8), F],
                 ctypes.c_bool)):
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = args, result
        self.step = 0
        self.lib.controllerOutOfTreeInit()

    @property
    def weight(self) -> ctypes.Array:
        return (ctypes.c_float * (4 * N_IN)).in_dll(self.lib, "test_policy_weight")

    @property
    def bias(self) -> ctypes.Array:
        return (ctypes.c_float * 4).in_dll(self.lib, "test_policy_bias")

    @property
    def last_input(self) -> ctypes.Array:
        return (ctypes.c_float * N_IN).in_dll(self.lib, "test_policy_last_input")

    @property
    def policy_calls(self) -> ctypes.c_uint:
        return ctypes.c_uint.in_dll(self.lib, "test_policy_calls")

    def clock(self, ms: float) -> None:
        self.lib.shim_set_time_us(int(ms * 1000))

    def param(self, name: str, value: float) -> None:
        assert self.lib.shim_param_set(b"nanoswarm", name.encode(), value) == 0, name

    def log(self, name: str) -> float:
        value = ctypes.c_double()
        assert self.lib.shim_log_read(b"nanoswarm", name.encode(), ctypes.byref(value)) == 0, name
        return value.value

    def fly_to(self, goal) -> None:
        for axis, value in zip("XYZ", goal):
            self.param(f"goal{axis}", value)
        self.param("enable", 1)

    def tick(self, pos, vel=(0, 0, 0), quat=LEVEL, gyro_deg=(0, 0, 0)) -> tuple[int, np.ndarray]:
        """One 1 kHz tick; returns the control mode and the normalised motor forces."""
        forces = arr([0] * 4)
        mode = self.lib.shim_tick(arr(pos), arr(vel), arr(quat), arr(gyro_deg), self.step, forces)
        self.step += 1
        return mode, np.array(forces)

    def hear(self, drone_id: int, pos, vel=(0, 0, 0)) -> None:
        """A neighbour's state broadcast arrives over P2P (millimetres on the wire)."""
        mm = [round(v * 1000) for v in (*pos, *vel)]
        packet = STATE.pack(0x4E, 1, drone_id, *mm)
        self.lib.shim_p2p_deliver(P2P_PORT, packet, len(packet))

    def pid_setpoint(self) -> tuple[np.ndarray, float, list[int]]:
        """The last setpoint the stock PID got: position, yaw (deg) and the x, y, z modes (1: absolute)."""
        position, yaw, modes = arr([0] * 3), ctypes.c_float(), (ctypes.c_int * 3)()
        self.lib.shim_pid_setpoint(position, ctypes.byref(yaw), modes)
        return np.array(position), yaw.value, list(modes)

    def console(self) -> str:
        return self.lib.shim_console().decode()


@pytest.fixture
def firmware(app_library: Path, tmp_path: Path) -> Firmware:
    """A private copy of the library: its static state (the app's, the shim's) starts fresh in every test."""
    copy = tmp_path / app_library.name
    shutil.copy2(app_library, copy)
    firmware = Firmware(copy)
    firmware.policy_calls.value = 0  # the start-up self-test ran the policy once
    return firmware


def simulated_observations(pos: torch.Tensor, vel: torch.Tensor, quat: torch.Tensor, omega: torch.Tensor,
                           goals: torch.Tensor) -> torch.Tensor:
    """The simulator's observations (E, M, size) of drones (E, M, ...) in an arena without columns."""
    e = pos.shape[0]
    grid = ObstacleGrid(cell=1.0, cells=(4, 4), max_radius=0.3, sense_range=SENSE_RANGE)
    distances = distance_grid(grid, torch.zeros(e, 4, 4, dtype=torch.bool), torch.full((e,), 0.3), pos[..., :2])[0]
    drones = DroneState(pos=pos, vel=vel, quat=quat, omega=omega, thrust=torch.zeros(*pos.shape[:2], 4),
                        motor_noise=torch.zeros(*pos.shape[:2], 4))
    return observe(drones, goals, pairwise(pos, vel), distances, K, None)


def random_swarms(e: int, m: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(e, m, 3, generator=g) * torch.tensor([4.0, 4.0, 2.0]) - torch.tensor([2.0, 2.0, 0.0])
    vel = torch.randn(e, m, 3, generator=g)
    quat = torch.randn(e, m, 4, generator=g)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    omega = torch.randn(e, m, 3, generator=g) * 3.0
    goals = pos + torch.randn(e, m, 3, generator=g)
    return pos, vel, quat, omega, goals


def test_observation_matches_simulator(firmware: Firmware):
    pos, vel, quat, omega, goals = random_swarms(e=16, m=5, seed=0)
    expected = simulated_observations(pos, vel, quat, omega, goals)
    obs = arr([0] * N_IN)
    for env in range(pos.shape[0]):
        for i in range(pos.shape[1]):
            me = torch.cat((pos[env, i], vel[env, i], quat[env, i], omega[env, i]))
            others = [j for j in range(pos.shape[1]) if j != i][::-1]  # table order is arrival order, not index order
            states = torch.cat([torch.cat((pos[env, j], vel[env, j])) for j in others])
            firmware.lib.nsw_build_observation(arr(me), arr(goals[env, i]), arr(states), len(others), 4.0, obs)
            np.testing.assert_allclose(np.array(obs), expected[env, i].numpy(), atol=1e-5)


def test_controller_feeds_the_policy_the_simulators_observation(firmware: Firmware):
    """End to end: estimator state, gyro in deg/s, goal parameters and P2P neighbours in; policy input out."""
    pos, vel, quat, omega, goals = random_swarms(e=1, m=4, seed=1)
    # Neighbours arrive in millimetres, so the oracle sees the states as received.
    pos[0, 1:] = torch.round(pos[0, 1:] * 1000) / 1000
    vel[0, 1:] = torch.round(vel[0, 1:] * 1000) / 1000
    expected = simulated_observations(pos, vel, quat, omega, goals)[0, 0].numpy()
    firmware.fly_to(goals[0, 0].tolist())
    for j in (3, 1, 2):
        firmware.hear(10 + j, pos[0, j].tolist(), vel[0, j].tolist())
    mode, _ = firmware.tick(pos[0, 0].tolist(), vel[0, 0].tolist(), quat[0, 0].tolist(),
                            (omega[0, 0] * 180.0 / math.pi).tolist())
    assert mode == CONTROL_FORCE
    np.testing.assert_allclose(np.array(firmware.last_input), expected, atol=1e-5)


def neighbor_block(firmware: Firmware) -> np.ndarray:
    piece = LAYOUT.slices["neighbors"]
    return np.array(firmware.last_input)[piece].reshape(K, LAYOUT.neighbor_size)


def test_neighbors_are_nearest_first_extrapolated_and_dropped_when_stale(firmware: Firmware):
    me = (0.0, 0.0, 1.0)
    firmware.param("rateHz", 1000)  # a fresh observation on every tick
    firmware.fly_to((0.0, 0.0, 1.0))
    firmware.hear(11, (2.0, 0.0, 1.0))
    firmware.hear(12, (0.0, 0.5, 1.0), vel=(0.0, 1.0, 0.0))
    firmware.hear(13, (0.0, 0.0, 2.0))
    firmware.hear(1, (0.0, 0.1, 1.0))  # our own id (radio address ...01): an echo, never a neighbour
    firmware.tick(me)
    np.testing.assert_allclose(neighbor_block(firmware)[:, :3], [[0.0, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-6)

    firmware.clock(100)  # 100 ms later drone 12 has moved 0.1 m along y at its broadcast velocity
    firmware.tick(me)
    np.testing.assert_allclose(neighbor_block(firmware)[0], [0.0, 0.6, 0.0, 0.0, 1.0, 0.0], atol=1e-6)

    firmware.clock(700)  # everyone silent for longer than nbrTimeout, then only drone 11 is heard again
    firmware.param("enable", 1)  # keeps the command fresh (cmdTimeout 500 ms)
    firmware.param("absentDist", 3.0)
    firmware.hear(11, (2.0, 0.0, 1.0))
    firmware.tick(me)
    absent = [3.0, 0, 0, 0, 0, 0]  # absentDist along +x, keeping pace
    np.testing.assert_allclose(neighbor_block(firmware), [[2.0, 0, 0, 0, 0, 0], absent], atol=1e-6)
    assert firmware.log("nbrs") == 1


def test_a_full_neighbor_table_replaces_the_drone_heard_longest_ago(firmware: Firmware):
    firmware.param("rateHz", 1000)
    firmware.fly_to((0.0, 0.0, 1.0))
    for n in range(16):  # NSW_MAX_NEIGHBORS; the first one heard is also the nearest
        firmware.clock(n)
        firmware.hear(11 + n, (0.5 + 0.1 * n, 0.0, 1.0))
    firmware.clock(20)
    firmware.hear(40, (0.0, 0.55, 1.0))
    firmware.tick((0.0, 0.0, 1.0))
    np.testing.assert_allclose(neighbor_block(firmware)[:, :3], [[0.0, 0.55, 0.0], [0.6, 0.0, 0.0]], atol=1e-6)
    assert firmware.log("nbrs") == 16


def test_p2p_state_packet_round_trips_in_millimetres_and_saturates(firmware: Firmware):
    kin = [1.2344, -0.0006, 40.0, -0.25, 0.0, -33.0]  # m and m/s; 40 m and -33 m/s exceed int16 millimetres
    packet = ctypes.create_string_buffer(15)
    assert firmware.lib.nsw_pack_state(7, arr(kin), packet) == 15
    assert STATE.unpack(packet.raw) == (0x4E, 1, 7, 1234, -1, 32767, -250, 0, -32767)
    drone_id, decoded = ctypes.c_uint8(), arr([0] * 6)
    assert firmware.lib.nsw_unpack_state(packet.raw, 15, ctypes.byref(drone_id), decoded)
    assert drone_id.value == 7
    np.testing.assert_allclose(np.array(decoded), [1.234, -0.001, 32.767, -0.25, 0.0, -32.767], atol=1e-6)
    assert not firmware.lib.nsw_unpack_state(b"\x4e\x02" + packet.raw[2:], 15, ctypes.byref(drone_id), decoded)
    assert firmware.lib.nsw_pack_state(7, arr([math.nan, 0, 0, 0, 0, 0]), packet) == 0


def test_own_state_is_broadcast_and_withheld_while_uncertain(firmware: Firmware):
    firmware.tick((0.5, -1.25, 0.8), vel=(0.1, 0.0, -0.2))
    firmware.lib.nanoswarmServiceLinks()
    port, data = ctypes.c_uint8(), ctypes.create_string_buffer(60)
    size = firmware.lib.shim_p2p_sent(ctypes.byref(port), data)
    assert (size, port.value) == (15, P2P_PORT)
    assert STATE.unpack(data.raw[:15]) == (0x4E, 1, 0x01, 500, -1250, 800, 100, 0, -200)

    firmware.lib.shim_set_position_variance(1.0)  # a lost positioning fix
    firmware.clock(100)
    firmware.tick((0.6, -1.25, 0.8))
    firmware.lib.nanoswarmServiceLinks()
    firmware.lib.shim_p2p_sent(ctypes.byref(port), data)
    assert STATE.unpack(data.raw[:15])[3] == 500  # nothing new went out


def test_thrust_mapping_follows_the_simulators_curve(firmware: Firmware):
    params = nominal_drone_params(load_params("crazyflie21_sysid"), 1, physics_dt=0.005)
    actions = torch.linspace(-1.5, 1.5, 61)
    expected = commanded_thrust(actions.reshape(-1, 1).expand(-1, 4), params)[:, 0] / params.thrust_max[0, 0]
    got = [firmware.lib.nsw_force_fraction(float(a)) for a in actions]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-6)


def test_policy_actions_reach_the_motors_as_normalised_forces(firmware: Firmware, test_policy: LinearPolicy):
    firmware.fly_to((0.5, 0.0, 1.0))
    mode, forces = firmware.tick((0.0, 0.0, 1.0))
    action = np.clip(test_policy(np.array(firmware.last_input)), -1, 1)
    f = (action + 1) / 2
    c0, c1, c2 = load_params("crazyflie21_sysid").thrust_curve
    assert mode == CONTROL_FORCE
    assert firmware.log("mode") == MODES["POLICY"]
    np.testing.assert_allclose(forces, c0 + c1 * f + c2 * f * f, rtol=1e-5)


def test_policy_runs_at_its_rate_and_its_action_is_held_between_runs(firmware: Firmware):
    firmware.param("rateHz", 100)
    firmware.param("cmdTimeout", 0)
    firmware.fly_to((0.0, 0.0, 1.0))
    forces = [firmware.tick((0.0, 0.001 * tick, 1.0))[1] for tick in range(30)]
    assert firmware.policy_calls.value == 3  # ticks 0, 10 and 20 of the 1 kHz loop
    assert all(np.array_equal(forces[t], forces[0]) for t in range(10))
    assert not np.array_equal(forces[10], forces[9])

    firmware.param("rateHz", 500)
    for tick in range(10):
        firmware.tick((0.0, 0.0, 1.0))
    assert firmware.policy_calls.value == 3 + 5


def test_idle_flies_the_stock_pid_on_the_commanders_setpoint(firmware: Firmware):
    mode, _ = firmware.tick((0.0, 0.0, 1.0))
    position = firmware.pid_setpoint()[0]
    assert (mode, firmware.log("mode")) == (CONTROL_LEGACY, MODES["IDLE"])
    np.testing.assert_array_equal(position, [7.0, 8.0, 9.0])
    assert firmware.policy_calls.value == 0


def test_stale_command_holds_position_with_the_pid_and_the_policy_resumes(firmware: Firmware):
    heading_30_deg = (math.cos(math.radians(15)), 0.0, 0.0, math.sin(math.radians(15)))
    firmware.fly_to((1.0, 0.0, 1.0))
    assert firmware.tick((0.2, 0.1, 1.0))[0] == CONTROL_FORCE
    firmware.clock(501)  # no command for longer than cmdTimeout (500 ms)
    mode, _ = firmware.tick((0.25, 0.1, 1.0), quat=heading_30_deg)
    position, yaw, modes = firmware.pid_setpoint()
    assert (mode, modes) == (CONTROL_LEGACY, [1, 1, 1])
    np.testing.assert_allclose(position, [0.25, 0.1, 1.0], atol=1e-6)
    assert yaw == pytest.approx(30.0, abs=1e-3)
    assert [firmware.log(name) for name in ("mode", "faults", "fallbacks")] == [MODES["HOLD"], FAULT_COMMAND, 1]
    assert "POLICY -> HOLD [command stale]" in firmware.console()

    firmware.tick((0.3, 0.1, 1.0))
    np.testing.assert_allclose(firmware.pid_setpoint()[0], [0.25, 0.1, 1.0], atol=1e-6)  # held where it began
    firmware.param("enable", 1)  # the command is refreshed
    assert firmware.tick((0.3, 0.1, 1.0))[0] == CONTROL_FORCE
    assert "HOLD -> POLICY" in firmware.console()


def test_a_lost_link_lands_the_drone_and_fresh_commands_fly_it_again(firmware: Firmware):
    """No command for cmdTimeout + lossLandMs (0.5 + 2 s; the clock is absolute, in ms): HOLD becomes LAND,
    descending from where it was at land_speed 0.3 m/s."""
    firmware.fly_to((1.0, 0.0, 1.0))
    firmware.clock(501)
    firmware.tick((0.2, 0.1, 1.0))
    assert firmware.log("mode") == MODES["HOLD"]
    firmware.clock(2400)
    firmware.tick((0.2, 0.1, 1.0))
    assert firmware.log("mode") == MODES["HOLD"]     # 2.4 s without commands: still holding
    firmware.clock(2600)
    firmware.tick((0.2, 0.1, 1.0))
    assert firmware.log("mode") == MODES["LAND"] and "HOLD -> LAND" in firmware.console()
    firmware.clock(3600)
    firmware.tick((0.2, 0.1, 0.9))
    np.testing.assert_allclose(firmware.pid_setpoint()[0], [0.2, 0.1, 1.0 - 0.3 * 1.0], atol=1e-3)
    firmware.param("enable", 1)  # the link is back
    assert firmware.tick((0.2, 0.1, 0.7))[0] == CONTROL_FORCE


def test_uncertain_state_estimate_falls_back(firmware: Firmware):
    firmware.fly_to((1.0, 0.0, 1.0))
    firmware.lib.shim_set_position_variance(0.05 ** 2)
    assert firmware.tick((0.0, 0.0, 1.0))[0] == CONTROL_FORCE
    firmware.lib.shim_set_position_variance(0.2 ** 2)  # std 0.2 m > maxPosStd 0.1 m
    assert firmware.tick((0.0, 0.0, 1.0))[0] == CONTROL_LEGACY
    assert firmware.log("faults") == FAULT_STATE
    assert "[state estimate stale]" in firmware.console()


def test_non_finite_state_falls_back(firmware: Firmware):
    firmware.fly_to((1.0, 0.0, 1.0))
    firmware.tick((0.0, 0.0, 1.0))
    mode, _ = firmware.tick((0.0, 0.0, 1.0), quat=(math.nan, 0.0, 0.0, 0.0))
    assert (mode, firmware.log("faults")) == (CONTROL_LEGACY, FAULT_STATE)
    np.testing.assert_allclose(firmware.pid_setpoint()[0], [0.0, 0.0, 1.0])  # the last finite position


def test_non_finite_observation_falls_back(firmware: Firmware):
    firmware.fly_to((math.nan, 0.0, 1.0))
    mode, _ = firmware.tick((0.0, 0.0, 1.0))
    assert (mode, firmware.log("faults")) == (CONTROL_LEGACY, FAULT_OBSERVATION)
    assert firmware.policy_calls.value == 0


def test_non_finite_action_falls_back_until_the_policy_recovers(firmware: Firmware):
    firmware.fly_to((1.0, 0.0, 1.0))
    firmware.bias[2] = math.nan
    mode, _ = firmware.tick((0.0, 0.0, 1.0))
    assert (mode, firmware.log("mode"), firmware.log("faults")) == (CONTROL_LEGACY, MODES["HOLD"], FAULT_ACTION)
    assert "[action not finite]" in firmware.console()
    firmware.bias[2] = 0.2
    for _ in range(9):  # a failed evaluation is retried on schedule only (rateHz 100: every 10 ticks)
        assert firmware.tick((0.0, 0.0, 1.0))[0] == CONTROL_LEGACY
    assert firmware.tick((0.0, 0.0, 1.0))[0] == CONTROL_FORCE


def test_land_descends_at_land_speed_then_stops_the_motors(firmware: Firmware):
    firmware.fly_to((1.0, 0.0, 1.0))
    firmware.tick((0.5, 0.5, 0.6))
    firmware.param("land", 1)
    assert firmware.tick((0.5, 0.5, 0.6))[0] == CONTROL_LEGACY
    firmware.clock(1000)
    firmware.param("land", 1)
    firmware.tick((0.5, 0.5, 0.4))
    np.testing.assert_allclose(firmware.pid_setpoint()[0], [0.5, 0.5, 0.3], atol=1e-5)  # 0.6 m - 0.3 m/s * 1 s
    mode, forces = firmware.tick((0.5, 0.5, 0.04))
    assert (mode, firmware.log("mode")) == (CONTROL_FORCE, MODES["LANDED"])
    np.testing.assert_array_equal(forces, 0.0)


def test_a_fault_on_the_floor_keeps_the_motors_off(firmware: Firmware):
    firmware.lib.shim_set_position_variance(1.0)
    firmware.fly_to((0.0, 0.0, 1.0))
    mode, forces = firmware.tick((0.0, 0.0, 0.01))
    assert (mode, firmware.log("mode")) == (CONTROL_FORCE, MODES["HOLD"])
    np.testing.assert_array_equal(forces, 0.0)
    assert firmware.lib.shim_pid_calls() == 0


def test_app_channel_command_sets_goal_and_mode(firmware: Firmware):
    def send(packet: bytes) -> None:
        firmware.lib.shim_appchannel_push(packet, len(packet))
        firmware.lib.nanoswarmServiceLinks()

    send(command_packet((1.0, -2.0, 1.5), COMMAND_FLY))
    assert firmware.tick((0.0, 0.0, 1.0))[0] == CONTROL_FORCE
    np.testing.assert_allclose(np.array(firmware.last_input)[LAYOUT.slices["self.rel_goal"]], [-1.0, 2.0, -0.5])
    send(b"\x02" + command_packet((0.0, 0.0, 1.0), COMMAND_DISABLE)[1:])  # unknown version: ignored
    assert firmware.tick((0.0, 0.0, 1.0))[0] == CONTROL_FORCE
    send(command_packet((0.0, 0.0, 1.0), COMMAND_DISABLE))
    assert (firmware.tick((0.0, 0.0, 1.0))[0], firmware.log("mode")) == (CONTROL_LEGACY, MODES["IDLE"])
    send(command_packet((0.0, 0.0, 1.0), COMMAND_LAND))
    firmware.tick((0.0, 0.0, 1.0))
    assert firmware.log("mode") == MODES["LAND"]


def test_command_packet_rejects_unknown_commands_and_non_finite_goals():
    assert len(command_packet((0, 0, 1), COMMAND_FLY)) == 14
    with pytest.raises(CrazyflieAppError, match="command 3"):
        command_packet((0, 0, 1), 3)
    with pytest.raises(CrazyflieAppError, match="not finite"):
        command_packet((0, math.inf, 1), COMMAND_FLY)


def test_self_test_passes_on_the_exported_pair_and_a_changed_policy_never_flies(firmware: Firmware):
    assert firmware.lib.controllerOutOfTreeTest()
    assert "policy self-test passed" in firmware.console()

    firmware.weight[LAYOUT.slices["self.height"].start] += 0.01  # no longer the policy exported (height 1.1 m)
    assert not firmware.lib.controllerOutOfTreeTest()
    firmware.lib.controllerOutOfTreeInit()
    firmware.fly_to((0.0, 0.0, 1.0))
    mode, _ = firmware.tick((0.0, 0.0, 1.0))
    assert (mode, firmware.log("faults")) == (CONTROL_LEGACY, FAULT_SELF_TEST)
    assert "policy self-test FAILED" in firmware.console()


def header_floats(header: Path, name: str) -> np.ndarray:
    body = header.read_text().split(name)[1].split("{")[1].split("}")[0]
    return np.array([float(v.strip().rstrip("f")) for v in body.split(",")], dtype=np.float32)


def test_self_test_pair_from_the_host_compiled_policy_equals_the_callables(test_policy: LinearPolicy, tmp_path: Path):
    out = write_crazyflie_app(test_policy.directory, tmp_path / "app")
    header = out / "src" / "nanoswarm_selftest.h"
    obs = header_floats(header, "nanoswarm_selftest_input")
    np.testing.assert_array_equal(obs, selftest_observation(LAYOUT, SENSE_RANGE))
    np.testing.assert_allclose(header_floats(header, "nanoswarm_selftest_output"), test_policy(obs), atol=1e-5)
    assert (out / "src" / "policy.c").read_text() == (test_policy.directory / "policy.c").read_text()
    assert "NANOSWARM_THRUST_CURVE_C2 0.837480009f" in (out / "src" / "nanoswarm_thrust_curve.h").read_text()
    assert {"Makefile", "Kbuild", "app-config", "README.md"} <= {p.name for p in out.iterdir()}


def test_write_rejects_a_policy_header_without_or_with_another_layout(test_policy: LinearPolicy, tmp_path: Path):
    policy = tmp_path / "policy"
    shutil.copytree(test_policy.directory, policy)
    header = policy_header(LAYOUT)
    (policy / "policy.h").write_text("\n".join(l for l in header.splitlines() if "NANOSWARM_OBS_" not in l))
    with pytest.raises(CrazyflieAppError, match="declares no observation layout"):
        write_crazyflie_app(policy, tmp_path / "app", policy=test_policy)
    (policy / "policy.h").write_text(header.replace("NANOSWARM_OBS_SELF_VEL_START 3", "NANOSWARM_OBS_SELF_VEL_START 4"))
    with pytest.raises(CrazyflieAppError, match="NANOSWARM_OBS_SELF_VEL_START is 4, expected 3"):
        write_crazyflie_app(policy, tmp_path / "app", policy=test_policy)


def test_write_rejects_parameters_other_than_the_policys_training_curve(test_policy: LinearPolicy, tmp_path: Path):
    policy = tmp_path / "policy"
    shutil.copytree(test_policy.directory, policy)
    graph = helper.make_graph([helper.make_node("Identity", ["obs"], ["action"])], "policy",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("action", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph)
    qsrl = load_params("qsrl_nominal")
    helper.set_model_props(model, {"nanoswarm.action": json.dumps(action_metadata(qsrl))})
    onnx.save(model, policy / "policy.onnx")
    with pytest.raises(CrazyflieAppError, match="pass the set it was trained with"):
        write_crazyflie_app(policy, tmp_path / "app", policy=test_policy)
    hardware = Path(__file__).resolve().parents[1] / "hardware" / "params" / "qsrl_nominal.yaml"
    out = write_crazyflie_app(policy, tmp_path / "app", hardware, policy=test_policy)
    assert f"NANOSWARM_THRUST_MAX_N {qsrl.thrust_max:.9g}" in (out / "src" / "nanoswarm_thrust_curve.h").read_text()


def test_app_sources_cross_compile_for_the_cortex_m4(app_dir: Path):
    assert {p.name for p in (app_dir / "src").glob("*.c")} == {
        "nanoswarm_controller.c", "nsw_app.c", "nsw_neighbors.c", "nsw_observation.c", "nsw_packets.c",
        "nsw_thrust.c", "policy.c"}
    cross_compile(app_dir)


def test_generated_attention_policy_flies_in_the_app(tmp_path: Path):
    """The whole export path: a policy to ONNX, to C (nanoswarm.export.codegen), into the app; its self-test
    passes and the motors get onnxruntime's action on the simulator's observation, through the thrust curve."""
    torch.manual_seed(0)
    policy = SwarmPolicy(LAYOUT, PolicyConfig(hidden=8, head=(16,)))
    model_path = tmp_path / "policy" / "policy.onnx"
    model = export_onnx(policy, model_path, source_sha256="0" * 64,
                        action_meta=action_metadata(load_params("crazyflie21_sysid")))
    generate_c(model, tmp_path / "policy")
    app_dir = write_crazyflie_app(tmp_path / "policy", tmp_path / "app")
    cross_compile(app_dir)
    firmware = Firmware(build_app_library(app_dir))
    assert firmware.lib.controllerOutOfTreeTest()

    pos, vel, quat, omega, goals = random_swarms(e=1, m=3, seed=2)
    pos[0, 1:], vel[0, 1:] = torch.round(pos[0, 1:] * 1000) / 1000, torch.round(vel[0, 1:] * 1000) / 1000
    obs = simulated_observations(pos, vel, quat, omega, goals)[0, :1].numpy()
    firmware.fly_to(goals[0, 0].tolist())
    for j in (1, 2):
        firmware.hear(20 + j, pos[0, j].tolist(), vel[0, j].tolist())
    mode, forces = firmware.tick(pos[0, 0].tolist(), vel[0, 0].tolist(), quat[0, 0].tolist(),
                                 (omega[0, 0] * 180 / math.pi).tolist())
    assert mode == CONTROL_FORCE
    f = (onnxruntime_actions(model, obs)[0] + 1) / 2
    c0, c1, c2 = load_params("crazyflie21_sysid").thrust_curve
    np.testing.assert_allclose(forces, c0 + c1 * f + c2 * f * f, atol=1e-5)
