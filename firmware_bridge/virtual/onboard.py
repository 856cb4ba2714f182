"""The nanoswarm Crazyflie app, compiled for the host: the virtual drones' onboard code.

The virtual Crazyflie does not reimplement the app: it compiles the app's firmware-free C (nsw_app.c,
nsw_observation.c, nsw_neighbors.c, nsw_packets.c, nsw_thrust.c) with the export's policy.c and a batch
wrapper, nsw_virtual.c, that stands in for the firmware glue and steps all N drones' apps in one call.
The app folder is the one `nanoswarm export` wrote next to the policy when there is one (what would be
flashed, headers and self-test included); otherwise one is written here by `write_crazyflie_app`, with the
self-test's reference action taken from the ONNX model when the folder holds one.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanoswarm.export.crazyflie_app import write_crazyflie_app
from nanoswarm.export.errors import HostBuildError
from nanoswarm.export.host import HOST_CFLAGS, onnxruntime_actions
from nanoswarm.firmware_bridge.virtual.errors import VirtualSwarmError
from nanoswarm.sim.params import QuadParams

WRAPPER = Path(__file__).with_name("nsw_virtual.c")
APP_SOURCES = ("nsw_app.c", "nsw_observation.c", "nsw_neighbors.c", "nsw_packets.c", "nsw_thrust.c", "policy.c")
ESTIMATE_FLOATS = 14   # nsw_virtual.c: position 3, velocity 3, quaternion (w, x, y, z) 4, rates 3, position std 1
OUTPUT_FLOATS = 8      # nsw_virtual.c: forces 4, hold position 3, hold yaw 1
STATE_PACKET_SIZE = 15  # nsw_packets.h
OUTPUT_STOCK, OUTPUT_FORCES, OUTPUT_SETPOINT, OUTPUT_MOTORS_OFF = 0, 1, 2, 3  # nsw_app.h nsw_output_kind_t
VARIABLE_PARAM, VARIABLE_COMMAND_PARAM, VARIABLE_LOG = 0, 1, 2                 # nsw_virtual.c
VARIABLE_CTYPES = (ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_float)


# The generated policy.c keeps its scratch buffer in static memory, and a process loads one copy of a
# library however often it is opened: swarms sharing a library take turns at running the policy.
_POLICY_LOCKS: dict[Path, threading.Lock] = {}
_POLICY_LOCKS_GUARD = threading.Lock()


def _policy_lock(library: Path) -> threading.Lock:
    with _POLICY_LOCKS_GUARD:
        return _POLICY_LOCKS.setdefault(Path(library).resolve(), threading.Lock())


def default_build_dir() -> Path:
    """Where compiled apps are cached, keyed by a digest of their sources: one compile per policy and machine."""
    return Path(tempfile.gettempdir()) / f"nanoswarm-virtual-{os.getuid()}"


def app_sources(policy_dir: Path, params: QuadParams, params_source: str, work: Path) -> Path:
    """The folder holding the app's C sources and generated headers for the policy in `policy_dir`.

    `policy_dir` is an export folder (policy.onnx, c/, crazyflie_app/) or a folder with policy.c and policy.h.
    """
    policy_dir = Path(policy_dir)
    exported_app = policy_dir / "crazyflie_app" / "src"
    if (exported_app / "nsw_app.c").is_file():
        check_thrust_curve(exported_app / "nanoswarm_thrust_curve.h", params)
        return exported_app
    c_dir = policy_dir / "c" if (policy_dir / "c" / "policy.c").is_file() else policy_dir
    if not (c_dir / "policy.c").is_file() or not (c_dir / "policy.h").is_file():
        raise VirtualSwarmError(f"{policy_dir} holds no generated policy (policy.c and policy.h, or c/policy.c): "
                                "pass the folder `nanoswarm export CHECKPOINT --out DIR` wrote")
    model = policy_dir / "policy.onnx"
    reference = (lambda obs: onnxruntime_actions(model, obs[None])[0]) if model.is_file() else None
    return write_crazyflie_app(c_dir, work / "app", params_yaml=params_source, policy=reference) / "src"


def check_thrust_curve(header: Path, params: QuadParams) -> None:
    """Refuse an exported app whose thrust curve is not the simulated airframe's: its forces would be wrong."""
    defines = dict(re.findall(r"#define NANOSWARM_THRUST_(\w+) (\S+?)f?\n", header.read_text()))
    values = [float(defines.get(key, "nan")) for key in ("CURVE_C0", "CURVE_C1", "CURVE_C2", "MAX_N")]
    if not np.allclose(values, [*params.thrust_curve, params.thrust_max], rtol=1e-5, atol=1e-7):
        raise VirtualSwarmError(f"{header} has thrust curve {values[:3]} and maximum {values[3]} N, but the virtual "
                                f"drones fly the parameter set '{params.name}' ({list(params.thrust_curve)}, "
                                f"{params.thrust_max} N): pass the parameter set the policy was exported with")


def build_library(src: Path, build_dir: Path) -> Path:
    """Compile the app in `src` with the batch wrapper into a shared library named by the sources' digest."""
    sources = [src / name for name in APP_SOURCES]
    headers = sorted(src.glob("*.h"))
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise VirtualSwarmError(f"the app folder lacks {missing}: regenerate it with nanoswarm export")
    texts = [p.read_text() for p in (*sources, *headers, WRAPPER)]
    digest = hashlib.sha256("\0".join((*texts, *HOST_CFLAGS)).encode()).hexdigest()[:16]
    library = build_dir / f"libnsw_virtual_{digest}.so"
    if library.exists():
        return library
    gcc = shutil.which("gcc")
    if gcc is None:
        raise HostBuildError("gcc not found on PATH; the virtual drones compile the app with it (apt-get install gcc)")
    build_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{library.name}.", dir=build_dir)
    os.close(fd)
    try:
        done = subprocess.run([gcc, *HOST_CFLAGS, f"-I{src}", *map(str, sources), str(WRAPPER), "-lm", "-o", tmp],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise HostBuildError(f"gcc failed on the app in {src}:\n{done.stderr.strip()}")
        os.replace(tmp, library)  # atomic: concurrent builders never load a half-written file
    finally:
        Path(tmp).unlink(missing_ok=True)
    return library


def compile_app(policy_dir: Path, params: QuadParams, params_source: str, build_dir: Path | None = None) -> Path:
    """The shared library of the app that flies the policy in `policy_dir` (see `app_sources`)."""
    with tempfile.TemporaryDirectory(prefix="nanoswarm_app_") as work:
        src = app_sources(policy_dir, params, params_source, Path(work))
        return build_library(src, build_dir or default_build_dir())


@dataclass(frozen=True)
class AppVariable:
    """One nanoswarm.* parameter or log variable of the app (nsw_virtual.c's table)."""

    index: int
    name: str
    kind: int                 # VARIABLE_PARAM, VARIABLE_COMMAND_PARAM or VARIABLE_LOG
    ctype: type               # ctypes type of the variable


@dataclass
class AppStep:
    """What one tick of the apps asks of each drone (N rows)."""

    kinds: np.ndarray         # OUTPUT_* per drone
    forces: np.ndarray        # (N, 4) normalised motor forces (OUTPUT_FORCES)
    hold: np.ndarray          # (N, 3) position to hold (OUTPUT_SETPOINT), m
    modes: np.ndarray         # (N,) nsw_mode_t
    faults: np.ndarray        # (N,) NSW_FAULT_* bits


class OnboardApps:
    """N drones' apps in one compiled library. The caller serialises the calls of one instance."""

    def __init__(self, library: Path, ids: np.ndarray, loop_hz: int):
        self.lib = ctypes.CDLL(str(library))
        c = ctypes
        for name, args, result in (
                ("nsw_self_test", [c.POINTER(c.c_float)], c.c_int),
                ("nsw_swarm_create", [c.c_int, c.c_void_p, c.c_int, c.c_int], c.c_void_p),
                ("nsw_swarm_destroy", [c.c_void_p], None),
                ("nsw_swarm_step", [c.c_void_p, c.c_void_p, c.c_void_p, c.c_uint32, c.c_void_p, c.c_void_p,
                                    c.c_void_p, c.c_void_p], None),
                ("nsw_swarm_broadcast", [c.c_void_p, c.c_uint32, c.c_void_p, c.c_void_p], c.c_int),
                ("nsw_swarm_deliver", [c.c_void_p, c.c_void_p, c.c_void_p, c.c_int, c.c_uint32], None),
                ("nsw_swarm_command", [c.c_void_p, c.c_int, c.c_char_p, c.c_size_t, c.c_uint32], c.c_int),
                ("nsw_swarm_command_set", [c.c_void_p, c.c_int, c.c_uint32], None),
                ("nsw_variable_count", [], c.c_int),
                ("nsw_variable_name", [c.c_int], c.c_char_p),
                ("nsw_variable_kind", [c.c_int], c.c_int),
                ("nsw_variable_type", [c.c_int], c.c_int),
                ("nsw_swarm_variable", [c.c_void_p, c.c_int, c.c_int], c.c_void_p),
                ("nsw_mode_name", [c.c_int], c.c_char_p)):
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = args, result
        self._policy_lock = _policy_lock(library)
        worst = ctypes.c_float()
        with self._policy_lock:
            self.self_test_passed = bool(self.lib.nsw_self_test(ctypes.byref(worst)))
        self.self_test_error = float(worst.value)
        self.count = len(ids)
        ids = np.ascontiguousarray(ids, dtype=np.uint8)
        self._swarm = self.lib.nsw_swarm_create(self.count, ids.ctypes.data, int(loop_hz), int(self.self_test_passed))
        if not self._swarm:
            raise MemoryError(f"the apps of {self.count} virtual drones could not be allocated")
        n = self.count
        self._kinds = np.zeros(n, np.int32)
        self._outputs = np.zeros((n, OUTPUT_FLOATS), np.float32)
        self._modes = np.zeros(n, np.uint8)
        self._faults = np.zeros(n, np.uint8)
        self._senders = np.zeros(n, np.int32)
        self._packets = np.zeros((n, STATE_PACKET_SIZE), np.uint8)
        self.variables = [AppVariable(k, self.lib.nsw_variable_name(k).decode(), self.lib.nsw_variable_kind(k),
                                      VARIABLE_CTYPES[self.lib.nsw_variable_type(k)])
                          for k in range(self.lib.nsw_variable_count())]

    def close(self) -> None:
        if self._swarm:
            self.lib.nsw_swarm_destroy(self._swarm)
            self._swarm = None

    def mode_name(self, mode: int) -> str:
        return self.lib.nsw_mode_name(int(mode)).decode()

    def step(self, estimates: np.ndarray, active: np.ndarray, now_ms: int) -> AppStep:
        """One stabilizer tick: estimates (N, 14) as nsw_virtual.c lays them out; `active` selects the drones
        whose controller is the app."""
        est = np.ascontiguousarray(estimates, dtype=np.float32)
        act = np.ascontiguousarray(active, dtype=np.uint8)
        with self._policy_lock:
            self.lib.nsw_swarm_step(self._swarm, est.ctypes.data, act.ctypes.data, now_ms & 0xFFFFFFFF,
                                    self._kinds.ctypes.data, self._outputs.ctypes.data, self._modes.ctypes.data,
                                    self._faults.ctypes.data)
        out = self._outputs
        return AppStep(kinds=self._kinds.copy(), forces=out[:, :4].copy(), hold=out[:, 4:7].copy(),
                       modes=self._modes.copy(), faults=self._faults.copy())

    def broadcast(self, now_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """The own-state broadcasts due now: sender indices (k,) and their packets (k, 15)."""
        sent = self.lib.nsw_swarm_broadcast(self._swarm, now_ms & 0xFFFFFFFF, self._senders.ctypes.data,
                                            self._packets.ctypes.data)
        return self._senders[:sent].copy(), self._packets[:sent].copy()

    def deliver(self, packets: np.ndarray, receivers: np.ndarray, now_ms: int) -> None:
        """Hand P2P packets (k, 15) to the drones marked in `receivers` (k, N)."""
        packets = np.ascontiguousarray(packets, dtype=np.uint8)
        receivers = np.ascontiguousarray(receivers, dtype=np.uint8)
        self.lib.nsw_swarm_deliver(self._swarm, packets.ctypes.data, receivers.ctypes.data, len(packets),
                                   now_ms & 0xFFFFFFFF)

    def command(self, drone: int, data: bytes, now_ms: int) -> bool:
        """An app-channel packet for `drone`; False when it is not a valid command (then ignored)."""
        return bool(self.lib.nsw_swarm_command(self._swarm, drone, data, len(data), now_ms & 0xFFFFFFFF))

    def command_set(self, drone: int, now_ms: int) -> None:
        """The command parameters of `drone` were written: they become its command."""
        self.lib.nsw_swarm_command_set(self._swarm, drone, now_ms & 0xFFFFFFFF)

    def variable(self, drone: int, variable: AppVariable) -> ctypes._SimpleCData:
        """The live ctypes view of one drone's copy of an app variable (read and written in place)."""
        address = self.lib.nsw_swarm_variable(self._swarm, drone, variable.index)
        return variable.ctype.from_address(address)
