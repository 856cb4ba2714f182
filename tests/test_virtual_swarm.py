"""Specification of the virtual Crazyflie swarm (nanoswarm.firmware_bridge.virtual): stock cflib (its own UDP
driver, never a mock) connects to the virtual drones, reads their TOCs, logs and parameters, flies them with
the high-level commander and streamed setpoints, meets the supervisor and its watchdog, commands the
nanoswarm app's compiled C policy over the app channel, and survives faults and hostile packets.

Flights run in real time on the drones' simulated clock, which falls behind the wall clock when the machine
is loaded: waits are bounded in simulated seconds (`within`), with a wall-clock cap only against hangs, and
assert on the simulated state (`VirtualSwarm.positions()`, `.states()`) or on what cflib received.
"""

from __future__ import annotations


import _thread
import contextlib
import logging
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

import cflib.crtp
from cflib.crazyflie import Crazyflie
from cflib.crazyflie.log import LogConfig
from cflib.crazyflie.swarm import CachedCfFactory, Swarm
from cflib.crazyflie.syncCrazyflie import SyncCrazyflie
from nanoswarm.export.codegen import generate_c
from nanoswarm.export.crazyflie_app import COMMAND_FLY, COMMAND_LAND, command_packet, write_crazyflie_app
from nanoswarm.export.host import onnxruntime_actions
from nanoswarm.export.onnx_export import action_metadata, export_onnx
from nanoswarm.firmware_bridge.virtual import LinkFaults, VirtualSwarm, VirtualSwarmError, serve_main
from nanoswarm.firmware_bridge.virtual.supervisor import FLYING_HYSTERESIS_S
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.params import load_params
from nanoswarm.training.train import hover_action

# Live links with wall-clock timeouts: `make test` runs these alone, after the rest (see the Makefile).
pytestmark = pytest.mark.flight

APP_SRC = Path(__file__).resolve().parents[1] / "export" / "crazyflie_app" / "src"
# Away from 19850-19859, which other tests may scan, and from test_fly's random ports (30000 and up); each
# pytest-xdist worker gets its own block, as tests of this file may run side by side.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
STOCK_PORT, APP_PORT, OWN_PORT = (21850 + 100 * _WORKER + offset for offset in (0, 20, 40))
MODE_POLICY = 1
BIT_CAN_BE_ARMED, BIT_ARMED, BIT_AUTO_ARMED, BIT_CAN_FLY, BIT_FLYING, BIT_LOCKED, BIT_CRASHED = 1, 2, 4, 8, 16, 64, 128


WALL_CAP_S = 60.0   # against hangs only: every wait below is bounded in simulated time


# ---- helpers ---------------------------------------------------------------------------------------------
def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait for something cflib or the host does (wall-clock deadline)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        time.sleep(0.02)


def within(swarm: VirtualSwarm, sim_s: float, condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition` holds, failing if the drones' clock advances `sim_s` seconds first."""
    deadline, cap = swarm.now() + sim_s, time.monotonic() + WALL_CAP_S
    while not condition():
        assert swarm.now() < deadline, f"{what} did not happen within {sim_s} simulated seconds"
        assert time.monotonic() < cap, f"{what}: the simulation hardly advances"
        time.sleep(0.02)


def fly_for(swarm: VirtualSwarm, sim_s: float, send: Callable[[], None]) -> None:
    """Call `send` every 20 ms of wall-clock time until `sim_s` simulated seconds have passed."""
    end = swarm.now() + sim_s
    while swarm.now() < end:
        send()
        time.sleep(0.02)


def mean_position(swarm: VirtualSwarm, drone: int, sim_s: float) -> np.ndarray:
    """A drone's position averaged over `sim_s` simulated seconds: single samples wander with the motor noise."""
    samples: list[np.ndarray] = []
    fly_for(swarm, sim_s, lambda: samples.append(swarm.positions()[drone]))
    return np.mean(samples, axis=0)


@contextlib.contextmanager
def connected(uri: str, cache: Path | None = None, timeout_s: float = 5.0) -> Iterator[SyncCrazyflie]:
    """A fully connected cflib link; open_link has no timeout of its own (crtp.md §8), so it runs in a thread."""
    scf = SyncCrazyflie(uri, cf=Crazyflie(rw_cache=str(cache)) if cache else Crazyflie())
    opener = threading.Thread(target=scf.open_link, daemon=True)
    opener.start()
    opener.join(timeout_s)
    assert scf.is_link_open(), f"cflib did not connect to {uri} within {timeout_s} s"
    try:
        wait_until(lambda: scf.cf.param.is_updated, timeout_s, f"the parameter values of {uri}")
        yield scf
    finally:
        scf.close_link()


def log_samples(scf: SyncCrazyflie, variables: list[str], period_ms: int, seconds: float,
                fetch: str = "float") -> list[tuple[int, dict]]:
    """(timestamp ms, values) of a log block of `variables` run for `seconds` of wall-clock time."""
    config = LogConfig(name="test", period_in_ms=period_ms)
    for name in variables:
        config.add_variable(name, fetch)
    samples: list[tuple[int, dict]] = []
    config.data_received_cb.add_callback(lambda stamp, data, _: samples.append((stamp, dict(data))))
    scf.cf.log.add_config(config)
    config.start()
    time.sleep(seconds)
    config.stop()
    config.delete()
    return samples


def _param_reply(scf: SyncCrazyflie, name: str, request: Callable[[], None]) -> float:
    """The value in the drone's reply to `request` (a read, or a write the drone echoes)."""
    got = threading.Event()
    values: list[str] = []

    def updated(_name: str, value: str) -> None:
        values.append(value)
        got.set()
    group, short = name.split(".")
    scf.cf.param.add_update_callback(group=group, name=short, cb=updated)
    request()
    assert got.wait(2.0), f"no value of {name} came back"
    scf.cf.param.remove_update_callback(group=group, name=short, cb=updated)
    return float(values[-1])


def read_param(scf: SyncCrazyflie, name: str) -> float:
    """A fresh read of a parameter from the drone (not cflib's cached value)."""
    return _param_reply(scf, name, lambda: scf.cf.param.request_param_update(name))


def write_param(scf: SyncCrazyflie, name: str, value: float) -> float:
    """Write a parameter and wait for the drone's echo, so that a later read follows the write."""
    return _param_reply(scf, name, lambda: scf.cf.param.set_value(name, value))


# ---- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def drivers() -> None:
    cflib.crtp.init_drivers()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export folder as `nanoswarm export` writes it (policy.onnx with its metadata, c/policy.c and .h, the
    Crazyflie app in crazyflie_app/) of an untrained K = 2 policy."""
    out = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    policy = SwarmPolicy(ObservationLayout(2), PolicyConfig(hidden=8, head=(16,)), hover_action("crazyflie21_sysid"))
    model = out / "policy.onnx"
    export_onnx(policy, model, source_sha256="ab" * 32, action_meta=action_metadata(load_params("crazyflie21_sysid")))
    generate_c(model, out / "c")
    write_crazyflie_app(out / "c", out / "crazyflie_app", policy=lambda obs: onnxruntime_actions(model, obs[None])[0])
    return out


@pytest.fixture(scope="class")
def stock() -> Iterator[VirtualSwarm]:
    """Seven drones without a policy; each test flies its own drone (drone 6 is never connected before
    the thrust-lock test: every cflib close_link sends a zero-thrust RPYT setpoint, which unlocks it)."""
    with VirtualSwarm(7, base_port=STOCK_PORT) as swarm:
        yield swarm


@pytest.fixture(scope="class")
def app(policy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualSwarm]:
    """Three drones running the nanoswarm app with the untrained policy."""
    with VirtualSwarm(3, policy_dir=policy_dir, base_port=APP_PORT,
                      build_dir=tmp_path_factory.mktemp("build")) as swarm:
        yield swarm


# ---- a swarm of one's own -------------------------------------------------------------------------------
def test_scan_finds_the_drones_on_the_scan_ports():
    with VirtualSwarm(3) as swarm:
        found = {uri for uri, _ in cflib.crtp.scan_interfaces()}
    assert set(swarm.uris) <= found
    assert swarm.uris == ["udp://127.0.0.1:19850", "udp://127.0.0.1:19851", "udp://127.0.0.1:19852"]


def test_supervisor_arming_and_bitfield():
    with VirtualSwarm(1, base_port=OWN_PORT, auto_arm=False) as swarm, connected(swarm.uris[0]) as scf:
        supervisor = scf.cf.supervisor
        within(swarm, 0.5, lambda: supervisor.read_bitfield() & BIT_CAN_BE_ARMED, "the pre-flight checks")
        assert not supervisor.read_bitfield() & (BIT_ARMED | BIT_AUTO_ARMED | BIT_CAN_FLY)
        scf.cf.high_level_commander.takeoff(0.5, 1.0)
        fly_for(swarm, 0.5, lambda: None)
        assert swarm.positions()[0][2] < 0.01, "motors stay off until armed"
        supervisor.send_arming_request(True)
        within(swarm, 0.5, lambda: supervisor.read_bitfield() & BIT_ARMED, "arming")
        assert supervisor.read_bitfield() & BIT_CAN_FLY
        scf.cf.high_level_commander.takeoff(0.5, 1.0)
        within(swarm, 0.5, lambda: supervisor.read_bitfield() & BIT_FLYING, "the flying bit")
        assert swarm.states()[0].armed and swarm.states()[0].flying
        supervisor.send_emergency_stop()
        within(swarm, 0.3, lambda: swarm.states()[0].state == "LOCKED", "the emergency stop")
        within(swarm, 0.3, lambda: supervisor.read_bitfield() & BIT_LOCKED, "the locked bit (cflib caches 0.1 s)")
        assert not swarm.states()[0].armed
        within(swarm, 1.0, lambda: swarm.positions()[0][2] < 0.01, "falling with the motors stopped")


def test_hostile_packets_are_answered_or_dropped_and_change_nothing_else(tmp_path: Path):
    """Thousands of random datagrams, truncated packets on every port, unknown ids and bad log-block commands:
    no handler fails, the drone still answers, its TOCs (their CRCs) and logs are as before, its physics stay
    finite, and the other drone notices nothing. (Random packets may legitimately arm, stop or lock the
    drone they hit: that is what those commands do.)"""
    rng = np.random.default_rng(7)
    with VirtualSwarm(2, base_port=OWN_PORT) as swarm:
        with connected(swarm.uris[0], cache=tmp_path) as scf:
            crc_files = sorted(p.name for p in tmp_path.glob("*.json"))
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = ("127.0.0.1", OWN_PORT)
        hostile = [rng.bytes(int(rng.integers(0, 40))) for _ in range(3000)]
        headers = [port << 4 | 0x0C | channel for port in (2, 3, 4, 5, 6, 7, 8, 9, 13, 15) for channel in range(4)]
        hostile += [bytes((h,)) + rng.bytes(int(rng.integers(0, 6))) for h in headers for _ in range(10)]
        hostile += [bytes((0x2D,)) + struct.pack("<H", 0xFFFF), bytes((0x2C, 2)) + struct.pack("<H", 0xFFFF),
                    bytes((0x5D, 6, 1, 7)) + struct.pack("<H", 0xFFFF), bytes((0x5D, 7, 99, 7, 0, 0)),
                    bytes((0x5D, 3, 42, 1)), bytes((0x5D, 6, 2, 0x0F, 0, 0)), b"\x5d\x08", b"\x5d"]
        hostile += [bytes((0x5D, 6, block)) + bytes((7, 0, 0)) * 9 for block in range(20)]  # more than 16 blocks
        for datagram in hostile:
            attacker.sendto(datagram, target)
        attacker.close()
        marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # its echo comes once the flood is handled
        marker.settimeout(0.5)
        for _ in range(20):
            marker.sendto(b"\xfcmarker", target)
            with contextlib.suppress(TimeoutError):
                if marker.recv(64) == b"\xf0marker":
                    break
        else:
            pytest.fail("the drone stopped answering after the flood")
        marker.close()
        counters = swarm.counters()
        assert counters["handler_errors"] == []
        assert counters["malformed"][0] > 0 and counters["malformed"][1] == 0
        positions = swarm.positions()
        assert np.isfinite(positions).all() and (np.abs(positions[:, :2]) < [2.0, 1.5]).all()
        assert swarm.states()[1].state == "READY_TO_FLY", "the other drone did not notice"
        with connected(swarm.uris[0], cache=tmp_path) as scf:
            assert sorted(p.name for p in tmp_path.glob("*.json")) == crc_files, "the TOCs are unchanged"
            samples = log_samples(scf, ["stateEstimate.z"], period_ms=20, seconds=0.3)
        assert samples and np.isfinite(samples[-1][1]["stateEstimate.z"])


def test_serve_main_prints_the_uris_and_serves_until_interrupted(capsys: pytest.CaptureFixture):
    """The `nanoswarm virtual-swarm` verb's body: it serves until Ctrl-C (here sent by a client thread)."""
    uri = f"udp://127.0.0.1:{OWN_PORT + 1}"
    answers: list[float] = []

    def client() -> None:
        try:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.settimeout(0.2)
            for _ in range(100):   # until the server answers a scan's probe
                probe.sendto(b"\xff", ("127.0.0.1", OWN_PORT + 1))
                with contextlib.suppress(OSError):
                    probe.recv(64)
                    break
            probe.close()
            with connected(uri) as scf:
                answers.append(float(scf.cf.param.get_value("pm.lowVoltage")))
        finally:
            _thread.interrupt_main()

    threading.Thread(target=client, daemon=True).start()
    assert serve_main(2, None, "lab4x3", "127.0.0.1", base_port=OWN_PORT) == 0
    assert answers == [pytest.approx(3.2)]
    assert uri in capsys.readouterr().out.split()


def test_a_folder_with_only_the_c_policy_gets_its_app_written(policy_dir: Path, tmp_path: Path):
    """Without an exported crazyflie_app/, the app is written around policy.c with the self-test's reference
    action from policy.onnx when there is one: here there is none, so the host build computes it."""
    with VirtualSwarm(1, policy_dir=policy_dir / "c", base_port=OWN_PORT, build_dir=tmp_path) as swarm:
        assert swarm.counters()["app_self_test_passed"] and swarm.states()[0].mode == "IDLE"
        assert [p.name for p in tmp_path.glob("*.so")], "the compiled app is cached in build_dir"


def test_bad_configuration_is_refused_with_the_fix(tmp_path: Path, policy_dir: Path):
    with pytest.raises(VirtualSwarmError, match="1 to 255"):
        VirtualSwarm(0)
    with pytest.raises(VirtualSwarmError, match="outside the arena"):
        VirtualSwarm(2, start_positions=np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]))
    with pytest.raises(VirtualSwarmError, match="closer than two collision radii"):
        VirtualSwarm(2, start_positions=np.array([[0.0, 0.0], [0.01, 0.0]]))
    with pytest.raises(VirtualSwarmError, match="probability"):
        LinkFaults(loss=1.5)
    with pytest.raises(VirtualSwarmError, match="no generated policy"):
        VirtualSwarm(1, policy_dir=tmp_path)
    with pytest.raises(VirtualSwarmError, match="pass the parameter set the policy was exported with"):
        VirtualSwarm(1, policy_dir=policy_dir, params="qsrl_nominal")
    with VirtualSwarm(1, base_port=OWN_PORT):
        with pytest.raises(VirtualSwarmError, match="another base_port"):
            VirtualSwarm(1, base_port=OWN_PORT).start()


# ---- without a policy: the stock controller ---------------------------------------------------------------
class TestStockDrones:
    """Drones without a policy: cflib's connection, TOCs, logs, parameters, every way to fly, and faults."""

    def test_toc_lists_the_firmware_names_and_is_cached_by_crc(self, stock: VirtualSwarm, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture):
        with connected(stock.uris[0], cache=tmp_path) as scf:
            logs, params = scf.cf.log.toc.toc, scf.cf.param.toc.toc
            estimate = {"x", "y", "z", "vx", "vy", "vz", "roll", "pitch", "yaw", "qx", "qy", "qz", "qw"}
            assert estimate <= set(logs["stateEstimate"])
            assert {"vbat", "state"} <= set(logs["pm"]) and {"stateX", "varPX"} <= set(logs["kalman"])
            assert "info" in logs["supervisor"] and "resetEstimation" in params["kalman"]
            assert "controller" in params["stabilizer"] and "nanoswarm" not in params   # no app without a policy
            assert float(scf.cf.param.get_value("stabilizer.controller")) == 0
            latencies: list[float] = []
            scf.cf.link_statistics.latency_updated.add_callback(latencies.append)
            wait_until(lambda: latencies, 2.0, "cflib's 10 Hz pings coming back (echo)")
        cached = sorted(p.name for p in tmp_path.glob("*.json"))
        assert len(cached) == 2, "one cached TOC for logs, one for parameters"

        caplog.set_level(logging.INFO, logger="cflib.crazyflie.toc")
        with connected(stock.uris[1], cache=tmp_path):
            pass
        hits = [r.getMessage() for r in caplog.records if "found in cache" in r.getMessage()]
        assert len(hits) == 2, f"the second connection fetched a TOC again: {hits}"

    def test_swarm_of_links_opens_in_parallel(self, stock: VirtualSwarm, tmp_path: Path):
        uris = stock.uris[:4]
        with Swarm(uris, factory=CachedCfFactory(rw_cache=str(tmp_path))) as swarm:
            swarm.parallel_safe(lambda scf: scf.wait_for_params())
            low: dict[str, float] = {}
            swarm.parallel_safe(lambda scf: low.update({scf.cf.link_uri: float(
                scf.cf.param.get_value("pm.lowVoltage"))}))
        assert low == {uri: pytest.approx(3.2) for uri in uris}

    def test_log_block_arrives_at_the_requested_period(self, stock: VirtualSwarm):
        """A 20 ms block delivers one sample per 20 ms of the drones' clock, stamped 20 ms apart. Generous real-time
        bound: the drones' clock keeps at least a tenth of real time even on a loaded 2-core machine."""
        with connected(stock.uris[2]) as scf:
            begin, started = stock.now(), time.monotonic()
            samples = log_samples(scf, ["stateEstimate.z", "pm.vbat", "kalman.varX"], period_ms=20, seconds=1.0)
            simulated, wall = stock.now() - begin, time.monotonic() - started
        assert simulated > 0.1 * wall
        assert abs(len(samples) - simulated / 0.02) <= 0.2 * simulated / 0.02 + 3
        steps = np.diff([stamp for stamp, _ in samples])
        assert (steps == 20).mean() > 0.9
        last = samples[-1][1]
        assert abs(last["stateEstimate.z"]) < 0.03 and last["pm.vbat"] == pytest.approx(4.2, abs=0.01)
        assert last["kalman.varX"] == pytest.approx(0.005**2, rel=0.01)

    def test_log_block_larger_than_one_packet_is_created_and_appended(self, stock: VirtualSwarm):
        """Twelve variables do not fit one create command (three bytes each): cflib appends the rest."""
        names = [f"{g}.{n}" for g, ns in (("stateEstimateZ", "x y z vx vy vz"), ("gyro", "x y z"),
                                           ("motor", "m1 m2 m3")) for n in ns.split()]
        with connected(stock.uris[2]) as scf:
            samples = log_samples(scf, names, period_ms=50, seconds=0.3, fetch="int16_t")
        assert samples and set(samples[-1][1]) == set(names)
        assert samples[-1][1]["motor.m1"] == 0 and abs(samples[-1][1]["stateEstimateZ.z"]) < 30   # mm

    def test_parameters_read_back_what_was_written(self, stock: VirtualSwarm):
        with connected(stock.uris[3]) as scf:
            try:
                write_param(scf, "stabilizer.controller", 1)
                write_param(scf, "pm.lowVoltage", 3.4)
                assert read_param(scf, "stabilizer.controller") == 1
                assert read_param(scf, "pm.lowVoltage") == pytest.approx(3.4)
                scf.cf.param.set_value_raw("pm.lowVoltage", 0x06, 3.3)   # set by name: needs no TOC
                within(stock, 0.3, lambda: read_param(scf, "pm.lowVoltage") == pytest.approx(3.3), "set by name")
                write_param(scf, "kalman.resetEstimation", 1)
                assert read_param(scf, "kalman.resetEstimation") == 0, "the estimator clears it once it has reset"
                samples = log_samples(scf, ["kalman.varX"], period_ms=10, seconds=0.3)
                assert samples[0][1]["kalman.varX"] > 0.1, "a reset estimator is uncertain"
            finally:
                write_param(scf, "stabilizer.controller", 0)
                write_param(scf, "pm.lowVoltage", 3.2)

    def test_external_position_and_pose_reach_the_drone(self, stock: VirtualSwarm):
        with connected(stock.uris[3]) as scf:
            scf.cf.extpos.send_extpose(1.0, -0.5, 0.25, 0.0, 0.0, 0.6, 0.8)
            samples = log_samples(scf, ["locSrv.x", "locSrv.y", "locSrv.z", "locSrv.qz", "locSrv.qw"], 20, 0.2)
        assert list(samples[-1][1].values()) == pytest.approx([1.0, -0.5, 0.25, 0.6, 0.8])

    def test_high_level_commander_takes_off_goes_to_and_lands(self, stock: VirtualSwarm):
        """The stock controller stand-in follows plans with a lag and holds a position to about 0.13 m, up to
        0.2 m (see firmware_bridge/virtual/stock.py): positions are averaged, checked once the lag has passed."""
        drone = 4
        start = stock.positions()[drone]
        with connected(stock.uris[drone]) as scf:
            hl = scf.cf.high_level_commander
            hl.takeoff(0.5, 0.8)
            fly_for(stock, 1.6, lambda: None)
            assert mean_position(stock, drone, 0.4)[2] == pytest.approx(0.5, abs=0.15), "took off to 0.5 m"
            assert stock.states()[drone].flying
            hl.go_to(0.3, 0.0, 0.0, 0.0, 1.0, relative=True)
            fly_for(stock, 1.6, lambda: None)
            moved = mean_position(stock, drone, 0.4) - start
            assert moved[0] == pytest.approx(0.3, abs=0.2) and moved[2] == pytest.approx(0.5, abs=0.15), moved
            hl.land(0.0, 1.5)   # the motors stop when the plan ends: the drone must be down by then
            within(stock, 2.0, lambda: stock.positions()[drone][2] < 0.02, "landing")
            # Touchdown can come before the plan ends (up to its 1.5 s), the motors stop then, and the supervisor
            # deems a drone flying until FLYING_HYSTERESIS_S after they stop; re-arming takes a few ticks more.
            within(stock, 1.5 + FLYING_HYSTERESIS_S + 0.5, lambda: stock.states()[drone].state == "READY_TO_FLY",
                   "the supervisor seeing the drone landed, and re-arming it for the next flight")

    def test_watchdog_levels_then_cuts_a_drone_whose_setpoints_stop(self, stock: VirtualSwarm):
        """On the floor with its motors running (a streamed position setpoint just below it), so that levelling
        out and the cut leave it upright where it stands and crash recovery can succeed."""
        drone = 5
        x, y, _ = stock.positions()[drone]
        with connected(stock.uris[drone]) as scf:
            fly_for(stock, 0.3, lambda: scf.cf.commander.send_position_setpoint(x, y, -0.1, 0.0))
            assert stock.states()[drone].state == "FLYING", "motors running count as flying"
            stopped = stock.now()
            within(stock, 0.6, lambda: stock.states()[drone].state == "WARNING_LEVEL_OUT", "the watchdog's level-out")
            assert stock.now() - stopped >= 0.45
            within(stock, 1.6, lambda: stock.states()[drone].state == "CRASHED", "the watchdog's cut")
            assert stock.now() - stopped >= 1.95
            assert stock.states()[drone].supervisor & BIT_CRASHED and stock.telemetry.motors[drone].max() == 0
            fly_for(stock, 2.0, lambda: None)   # motors ran in the last 2 s: the supervisor counts it as flying
            scf.cf.supervisor.send_crash_recovery_request()
            within(stock, 0.5, lambda: stock.states()[drone].state == "READY_TO_FLY", "crash recovery and re-arming")

    def test_velocity_hover_and_stop_setpoints(self, stock: VirtualSwarm):
        drone = 1
        start = stock.positions()[drone]
        with connected(stock.uris[drone]) as scf:
            commander = scf.cf.commander
            fly_for(stock, 1.0, lambda: commander.send_velocity_world_setpoint(0.0, 0.0, 0.5, 0.0))
            assert stock.positions()[drone][2] > 0.2, "climbing at 0.5 m/s"
            # 2 s at 0.4 m/s: the stock controller's velocity loop overshoots and wanders with the motor and
            # sensor noise (0.2-0.55 m in 1 s over repeats), so a longer leg keeps the check clear of that spread
            fly_for(stock, 2.0, lambda: commander.send_hover_setpoint(0.4, 0.0, 0.0, 0.5))
            moved = stock.positions()[drone] - start
            assert moved[0] > 0.3, f"hovering forward (body x is world x at yaw 0): {moved}"
            commander.send_stop_setpoint()
            commander.send_notify_setpoint_stop()
            within(stock, 1.5, lambda: stock.positions()[drone][2] < 0.01, "falling after a stop setpoint")

    def test_rpyt_thrust_is_locked_until_a_zero_thrust_packet(self, stock: VirtualSwarm):
        drone = 6
        with connected(stock.uris[drone]) as scf:
            fly_for(stock, 0.5, lambda: scf.cf.commander.send_setpoint(0.0, 0.0, 0.0, 60000))
            assert stock.positions()[drone][2] < 0.01, "a locked thrust stays 0"
            scf.cf.commander.send_setpoint(0.0, 0.0, 0.0, 0)
            fly_for(stock, 0.5, lambda: scf.cf.commander.send_setpoint(0.0, 0.0, 0.0, 60000))
            within(stock, 0.5, lambda: stock.positions()[drone][2] > 0.1, "climbing on full thrust once unlocked")
            scf.cf.commander.send_stop_setpoint()
            within(stock, 1.5, lambda: stock.positions()[drone][2] < 0.01, "falling after a stop setpoint")

    def test_silent_drone_fails_the_link_and_answers_again(self, stock: VirtualSwarm):
        drone = 3
        lost = threading.Event()
        with connected(stock.uris[drone]) as scf:
            scf.cf.connection_lost.add_callback(lambda *_: lost.set())
            stock.set_silent(drone, True)
            assert lost.wait(3.0), "cflib did not report the silent drone's link as lost"
        stock.set_silent(drone, False)
        with connected(stock.uris[drone]) as scf:
            assert float(scf.cf.param.get_value("pm.lowVoltage")) == pytest.approx(3.2)

    def test_link_faults_lose_duplicate_and_delay_packets(self, stock: VirtualSwarm):
        drone = 2

        def stamps_per_sample(scf: SyncCrazyflie) -> tuple[list[int], float]:
            """Timestamps of a 20 ms block over one second, and how many samples the drone sent meanwhile."""
            begin = stock.now()
            samples = log_samples(scf, ["pm.vbat"], period_ms=20, seconds=1.0)
            return [stamp for stamp, _ in samples], (stock.now() - begin) / 0.02

        with connected(stock.uris[drone]) as scf:
            try:
                stock.set_link_faults(LinkFaults(loss=0.5), drones=[drone], direction="down")
                lossy, sent = stamps_per_sample(scf)
                assert 0.25 < len(lossy) / sent < 0.75, "about half of the packets were lost"
                stock.set_link_faults(LinkFaults(duplicate=1.0), drones=[drone], direction="down")
                doubled, _ = stamps_per_sample(scf)
                assert len(doubled) >= 2 * len(set(doubled)) - 2, "every log packet arrived twice"
                stock.set_link_faults(LinkFaults(delay_s=0.15), drones=[drone], direction="up")
                started = time.monotonic()
                read_param(scf, "pm.lowVoltage")
                assert time.monotonic() - started >= 0.15, "the request waited on its way up"
            finally:
                stock.set_link_faults(LinkFaults(), drones=[drone])

    def test_battery_sag_lowers_vbat_and_reports_low_power(self, stock: VirtualSwarm):
        drone = 0
        with connected(stock.uris[drone]) as scf:
            stock.sag_battery(drone, 1.0)
            within(stock, 1.5, lambda: stock.states()[drone].vbat < 3.15, "the battery sagging below 3.2 V")
            samples = log_samples(scf, ["pm.vbat", "pm.state"], period_ms=50, seconds=0.2, fetch="float")
            stock.sag_battery(drone, 0.0)
        assert samples[-1][1]["pm.vbat"] < 3.2 and samples[-1][1]["pm.state"] == 3   # lowPower


# ---- with a policy: the nanoswarm app ------------------------------------------------------------------------
class TestAppDrones:
    """Drones running the nanoswarm app's own C code with an untrained policy."""

    def test_app_parameters_are_the_apps_own_memory(self, app: VirtualSwarm):
        with connected(app.uris[2]) as scf:
            assert read_param(scf, "stabilizer.controller") == 6, "a drone with the app boots with it selected"
            write_param(scf, "nanoswarm.rateHz", 50)
            write_param(scf, "nanoswarm.goalZ", 1.25)
            assert read_param(scf, "nanoswarm.rateHz") == 50 and read_param(scf, "nanoswarm.goalZ") == 1.25
            assert app.apps.variable(2, next(v for v in app.apps.variables if v.name == "goalZ")).value == 1.25
            write_param(scf, "nanoswarm.rateHz", 100)

    def test_app_tables_and_defaults_mirror_the_firmware_glue(self, app: VirtualSwarm):
        """nsw_virtual.c repeats nanoswarm_controller.c's parameter and log table and defaults; they must agree."""
        glue = (APP_SRC / "nanoswarm_controller.c").read_text()
        types = {"PARAM_FLOAT": "FLOAT", "PARAM_UINT8": "UINT8", "PARAM_UINT16": "UINT16", "LOG_UINT8": "UINT8",
                 "LOG_UINT32": "UINT32", "LOG_FLOAT": "FLOAT"}
        firmware_params = [(n, types[t]) for t, n in re.findall(r"PARAM_ADD(?:_WITH_CALLBACK)?\((\w+), (\w+),", glue)]
        firmware_logs = [(n, types[t]) for t, n in re.findall(r"LOG_ADD\((\w+), (\w+),", glue)]
        params = [(v.name, v.ctype.name) for v in app.systems.param_toc.variables if v.group == "nanoswarm"]
        logs = [(v.name, v.ctype.name) for v in app.systems.log_toc.variables if v.group == "nanoswarm"]
        assert params == firmware_params and logs == firmware_logs
        defaults = dict(re.findall(r"\.(\w+) = ([0-9.]+)f?,", glue))
        names = {"rate_hz": "rateHz", "command_timeout_ms": "cmdTimeout", "link_loss_land_ms": "lossLandMs", "neighbor_timeout_ms": "nbrTimeout",
                 "max_position_std": "maxPosStd", "absent_distance": "absentDist", "land_speed": "landSpeed",
                 "land_cut_height": "landCutZ"}
        toc = app.systems.param_toc
        for field, name in names.items():
            assert toc.get(toc.ids[f"nanoswarm.{name}"]).read(0) == pytest.approx(float(defaults[field]))
        broadcast_hz = re.search(r"broadcast_hz = (\d+);", glue)[1]
        assert toc.get(toc.ids["nanoswarm.txHz"]).read(0) == int(broadcast_hz)

    def test_app_channel_command_flies_the_compiled_policy(self, app: VirtualSwarm):
        assert app.counters()["app_self_test_passed"], "the C policy matches its ONNX model on the self-test"
        drone = 0
        console: list[str] = []
        samples: list[dict] = []
        with connected(app.uris[drone]) as scf:
            scf.cf.console.receivedChar.add_callback(console.append)
            scf.cf.high_level_commander.takeoff(0.5, 1.0)
            within(app, 2.0, lambda: app.positions()[drone][2] > 0.4, "take-off on the stock controller")
            assert app.states()[drone].mode == "IDLE"
            goal = app.positions()[drone]
            config = LogConfig(name="app", period_in_ms=20)
            config.add_variable("nanoswarm.mode", "uint8_t")
            config.add_variable("nanoswarm.evals", "uint32_t")
            config.data_received_cb.add_callback(lambda _, data, __: samples.append(dict(data)))
            scf.cf.log.add_config(config)
            config.start()
            fly_for(app, 0.5, lambda: scf.cf.appchannel.send_packet(command_packet(goal, COMMAND_FLY)))
            scf.cf.appchannel.send_packet(command_packet(goal, COMMAND_LAND))
            within(app, 0.3, lambda: app.states()[drone].mode in ("LAND", "LANDED"), "the land command")
            config.stop()
        modes = [s["nanoswarm.mode"] for s in samples]
        assert MODE_POLICY in modes, f"the app never flew its policy: modes {modes}"
        flying = [s["nanoswarm.evals"] for s in samples if s["nanoswarm.mode"] == MODE_POLICY]
        assert flying[-1] > flying[0], "the policy is evaluated while it flies"
        assert "IDLE -> POLICY" in "".join(console)

    def test_an_app_drone_that_stops_hearing_the_laptop_holds_then_lands_by_itself(self, app: VirtualSwarm):
        """The link-loss landing runs onboard: no command for cmdTimeout (0.5 s) means HOLD on the stock
        controller, and lossLandMs (2 s) more means the link is gone and the app lands where it is."""
        drone = 1
        with connected(app.uris[drone]) as scf:
            scf.cf.high_level_commander.takeoff(0.5, 1.0)
            within(app, 2.0, lambda: app.positions()[drone][2] > 0.4, "take-off on the stock controller")
            goal = app.positions()[drone]
            # (the untrained policy flies only briefly: how well it flies is not the point here)
            fly_for(app, 0.1, lambda: scf.cf.appchannel.send_packet(command_packet(goal, COMMAND_FLY)))
            assert app.states()[drone].mode == "POLICY"
            lost_at = app.now()         # the laptop falls silent here; the cflib link itself stays open
            within(app, 0.5 + 0.2, lambda: app.states()[drone].mode == "HOLD", "the stale-command fallback")
            within(app, 2.0 + 0.2, lambda: app.states()[drone].mode in ("LAND", "LANDED"), "the link-loss landing")
            assert app.now() - lost_at >= 2.0, "it waited the lossLandMs grace before landing"
            within(app, 4.0, lambda: app.states()[drone].mode == "LANDED", "touch-down")
            within(app, 1.0, lambda: app.positions()[drone][2] < 0.01, "resting on the floor")

    def test_neighbours_reach_each_app_over_p2p_and_go_with_its_loss(self, app: VirtualSwarm):
        within(app, 1.0, lambda: [s.neighbors for s in app.states()] == [2, 2, 2], "every app hearing both others")
        with connected(app.uris[1]) as scf:
            heard = log_samples(scf, ["nanoswarm.nbrs"], period_ms=50, seconds=0.3, fetch="uint8_t")
            assert heard[-1][1]["nanoswarm.nbrs"] == 2
        app.set_p2p_faults(LinkFaults(loss=1.0))
        within(app, 1.0, lambda: [s.neighbors for s in app.states()] == [0, 0, 0], "neighbours timing out")
        app.set_p2p_faults(LinkFaults(delay_s=0.1))
        within(app, 1.0, lambda: [s.neighbors for s in app.states()] == [2, 2, 2], "neighbours heard again")
