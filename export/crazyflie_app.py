"""The Crazyflie firmware app that flies an exported policy: the app's template plus headers generated from data.

`write_crazyflie_app` assembles a crazyflie-firmware out-of-tree controller around a generated policy.c/.h:
the template in export/crazyflie_app/ (its README.md says how to build and flash it) and three headers, so
that nothing the C code needs from the Python side is ever typed into C by hand:
- nanoswarm_thrust_curve.h: thrust_max and thrust_curve of a hardware/params set, the curve the simulator
  trained the policy with, through which the app turns actions into motor forces;
- nanoswarm_sensing.h: the sensing range at which the observation's obstacle grid is clipped;
- nanoswarm_selftest.h: an observation and the policy's action for it, computed here, which the firmware
  checks at start-up before it lets the policy fly.

`command_packet` writes the app-channel packet a host sends a drone (layout in src/nsw_packets.h).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
import torch

from nanoswarm.export.errors import CrazyflieAppError
from nanoswarm.export.host import compile_host
from nanoswarm.export.onnx_export import META_ACTION
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.dynamics import rotation_matrix
from nanoswarm.sim.observation import OBSTACLE_POINTS, ObservationLayout, build_observation
from nanoswarm.sim.params import QuadParams, load_params

Policy = Callable[[np.ndarray], np.ndarray]  # one observation (n_in,) float32 -> its 4 actions

TEMPLATE = Path(__file__).with_name("crazyflie_app")
TEMPLATE_ENTRIES = ("Makefile", "Kbuild", "app-config", "README.md", "src")
DEFAULT_PARAMS = "crazyflie21_sysid"  # the simulator's default parameter set (EnvConfig.params)
MOTORS = 4
# The self-test compares the firmware's float32 evaluation with this export-time one: different compilers
# and libm agree to about 1e-6 on a tanh network; a wrong or corrupted policy misses by far more.
SELFTEST_TOLERANCE = 1e-3

PACKET_VERSION = 1
COMMAND_DISABLE, COMMAND_FLY, COMMAND_LAND = 0, 1, 2
COMMAND_FORMAT = struct.Struct("<BfffB")  # version, goal x, y, z (m, world frame), command


def command_packet(goal: Sequence[float], command: int) -> bytes:
    """The app-channel packet that gives one drone its goal (m, world frame) and mode (COMMAND_*).

    The drone falls back to holding its position when packets stop for longer than its nanoswarm.cmdTimeout
    parameter, so a host streams them (10 Hz is plenty) rather than sending one.
    """
    if command not in (COMMAND_DISABLE, COMMAND_FLY, COMMAND_LAND):
        raise CrazyflieAppError(f"command {command} is unknown; use COMMAND_DISABLE, COMMAND_FLY or COMMAND_LAND")
    x, y, z = (float(v) for v in goal)
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise CrazyflieAppError(f"goal {list(goal)} is not finite")
    return COMMAND_FORMAT.pack(PACKET_VERSION, x, y, z, command)


def policy_layout(header: Path) -> ObservationLayout:
    """The observation layout that a generated policy.h declares, checked against this version's definition."""
    text = Path(header).read_text()
    defines = {m[1]: int(m[2]) for m in re.finditer(r"^\s*#define\s+NANOSWARM_(\w+)\s+\(?\s*(-?\d+)[uU]?\s*\)?\s*$",
                                                     text, re.MULTILINE)}
    if "OBS_NUM_NEIGHBORS" not in defines:
        raise CrazyflieAppError(f"{header} declares no observation layout (NANOSWARM_OBS_*): generate it from an "
                                "ONNX model that carries the nanoswarm.observation_layout metadata")
    layout = ObservationLayout(num_neighbors=defines["OBS_NUM_NEIGHBORS"])
    expected = {"POLICY_N_IN": layout.size, "POLICY_N_OUT": MOTORS, "OBS_NEIGHBOR_SIZE": layout.neighbor_size,
                "OBS_SELF_SIZE": layout.self_size, "OBS_OBSTACLE_POINTS": OBSTACLE_POINTS}
    for name, piece in layout.slices.items():
        macro = "OBS_" + name.upper().replace(".", "_")
        expected[f"{macro}_START"] = piece.start
        expected[f"{macro}_LEN"] = piece.stop - piece.start
    wrong = [f"NANOSWARM_{key} is {defines.get(key)}, expected {value}"
             for key, value in expected.items() if defines.get(key) != value]
    if wrong:
        raise CrazyflieAppError(f"{header} does not match this version's observation layout with "
                                f"{layout.num_neighbors} neighbours: {'; '.join(wrong)}; regenerate the C policy "
                                "with this version of nanoswarm")
    return layout


def check_training_curve(policy_dir: Path, params: QuadParams, source: str) -> None:
    """Refuse a parameter set whose thrust curve differs from the one an ONNX model in `policy_dir` records
    (metadata `nanoswarm.action`): the motors would then deliver other forces than the policy learned."""
    here = [*params.thrust_curve, params.thrust_max]
    for model in sorted(Path(policy_dir).glob("*.onnx")):
        metadata = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
        if META_ACTION not in metadata:
            continue
        action = json.loads(metadata[META_ACTION])
        trained = [*action["thrust_curve"], action["thrust_max_n"]]
        if not np.allclose(trained, here, rtol=1e-6, atol=1e-9):
            raise CrazyflieAppError(
                f"{model.name} was trained with thrust_curve {trained[:3]} and thrust_max {trained[3]} N, but the "
                f"parameter set '{source}' has {here[:3]} and {here[3]} N; pass the set it was trained with as "
                "params_yaml")


def selftest_observation(layout: ObservationLayout, sense_range: float) -> np.ndarray:
    """A plausible in-flight observation that exercises every block, built by the simulator's own builder:
    0.37 m from the goal, tilted and turning, the K neighbours 0.6 m away and farther, nearest first."""
    k = layout.num_neighbors
    quat = torch.tensor([0.99, 0.05, -0.04, 0.1])
    spread = torch.tensor([[0.5 + 0.1 * i, 0.3 * (-1.0) ** i, 0.05 * i] for i in range(k)]).reshape(k, 3)
    obs = build_observation(
        rel_goal=torch.tensor([0.3, -0.2, 0.1]), vel=torch.tensor([0.2, -0.1, 0.05]),
        rot=rotation_matrix(quat / quat.norm()), omega=torch.tensor([0.3, -0.2, 0.1]), height=torch.tensor([1.1]),
        neighbor_rel_pos=spread, neighbor_rel_vel=-0.2 * spread,
        obstacle_grid=torch.full((OBSTACLE_POINTS,), float(sense_range)))
    return obs.numpy().astype(np.float32)


def c_float(value: float) -> str:
    """A C float literal that reads back as exactly this float32."""
    text = f"{float(np.float32(value)):.9g}"
    return text + ("f" if any(c in text for c in ".e") else ".0f")


def c_array(values: np.ndarray) -> str:
    return ",\n  ".join(", ".join(c_float(v) for v in values[i:i + 6]) for i in range(0, len(values), 6))


GENERATED = "Generated by nanoswarm.export.crazyflie_app; do not edit, regenerate."


def thrust_curve_header(params: QuadParams, source: str) -> str:
    c0, c1, c2 = params.thrust_curve
    origin = "hardware/params" if source == params.name else source
    return f"""/* {GENERATED}
 * Motor thrust curve of the hardware parameter set {params.name} ({origin}): per motor,
 * thrust(f) = NANOSWARM_THRUST_MAX_N * (C0 + C1 f + C2 f^2) newtons for a command fraction f in [0, 1].
 */
#ifndef NANOSWARM_THRUST_CURVE_H
#define NANOSWARM_THRUST_CURVE_H

#define NANOSWARM_THRUST_MAX_N {c_float(params.thrust_max)}
#define NANOSWARM_THRUST_CURVE_C0 {c_float(c0)}
#define NANOSWARM_THRUST_CURVE_C1 {c_float(c1)}
#define NANOSWARM_THRUST_CURVE_C2 {c_float(c2)}

#endif
"""


def sensing_header(sense_range: float) -> str:
    return f"""/* {GENERATED}
 * The distance (m) at which the observation's obstacle grid is clipped in training (EnvConfig.obstacle_sense_range).
 */
#ifndef NANOSWARM_SENSING_H
#define NANOSWARM_SENSING_H

#define NANOSWARM_OBSTACLE_SENSE_RANGE {c_float(sense_range)}

#endif
"""


def selftest_header(obs: np.ndarray, action: np.ndarray) -> str:
    return f"""/* {GENERATED}
 * An observation and the policy's action for it, computed at export time: the firmware runs the policy on
 * the input at start-up and flies it only if every action is within the tolerance.
 */
#ifndef NANOSWARM_SELFTEST_H
#define NANOSWARM_SELFTEST_H

#include "policy.h"

#if NANOSWARM_POLICY_N_IN != {len(obs)} || NANOSWARM_POLICY_N_OUT != {len(action)}
#error "nanoswarm_selftest.h was generated for another policy; regenerate the app"
#endif

#define NANOSWARM_SELFTEST_TOLERANCE {c_float(SELFTEST_TOLERANCE)}

static const float nanoswarm_selftest_input[NANOSWARM_POLICY_N_IN] = {{
  {c_array(obs)}
}};

static const float nanoswarm_selftest_output[NANOSWARM_POLICY_N_OUT] = {{
  {c_array(action)}
}};

#endif
"""


def write_crazyflie_app(policy_dir: Path, out_dir: Path, params_yaml: Path | None = None, *,
                        policy: Policy | None = None, sense_range: float | None = None) -> Path:
    """Write the firmware app that flies the generated C policy in `policy_dir` (policy.c, policy.h) to `out_dir`.

    params_yaml: the hardware parameter set whose thrust curve maps actions to motor forces (default: the
        simulator's default set, crazyflie21_sysid). It must be the one the policy was trained with, which is
        checked against the `nanoswarm.action` metadata of any ONNX model in `policy_dir`.
    policy: evaluates the policy on one observation for the self-test pair (for example through
        onnxruntime); by default policy.c compiled with the host's gcc (nanoswarm.export.host).
    sense_range: the obstacle grid's sensing range in training (default: EnvConfig's).
    Returns `out_dir`, ready to build with crazyflie-firmware (see its README.md).
    """
    policy_dir, out_dir = Path(policy_dir), Path(out_dir)
    for name in ("policy.c", "policy.h"):
        if not (policy_dir / name).is_file():
            raise CrazyflieAppError(f"{policy_dir / name} not found: generate the C policy into {policy_dir} first")
    layout = policy_layout(policy_dir / "policy.h")
    source = str(params_yaml) if params_yaml is not None else DEFAULT_PARAMS
    params = load_params(source)
    check_training_curve(policy_dir, params, source)
    sense_range = EnvConfig.obstacle_sense_range if sense_range is None else float(sense_range)
    if not sense_range > 0:
        raise CrazyflieAppError(f"sense_range must be a positive distance in metres, got {sense_range}")

    obs = selftest_observation(layout, sense_range)
    if policy is None:
        with tempfile.TemporaryDirectory(prefix="nanoswarm_policy_") as build:
            action = compile_host(policy_dir, Path(build))(obs[None])[0]
    else:
        action = np.asarray(policy(obs), dtype=np.float32).reshape(-1)
    if action.shape != (MOTORS,) or not np.isfinite(action).all():
        raise CrazyflieAppError(f"the policy's action for the self-test observation is {action.tolist()}, not "
                                f"{MOTORS} finite numbers: check the policy (or the callable passed as policy)")

    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in TEMPLATE_ENTRIES:
        if (TEMPLATE / entry).is_dir():
            shutil.copytree(TEMPLATE / entry, out_dir / entry, dirs_exist_ok=True)
        else:
            shutil.copy2(TEMPLATE / entry, out_dir / entry)
    src = out_dir / "src"
    for name in ("policy.c", "policy.h"):
        shutil.copy2(policy_dir / name, src / name)
    (src / "nanoswarm_thrust_curve.h").write_text(thrust_curve_header(params, source))
    (src / "nanoswarm_sensing.h").write_text(sensing_header(sense_range))
    (src / "nanoswarm_selftest.h").write_text(selftest_header(obs, action))
    return out_dir
