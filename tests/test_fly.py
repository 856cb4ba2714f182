"""Specification of `nanoswarm fly`: manifests and missions, mission sequencing, safety rules, flight logs,
the laptop policy's twins, and whole flights through real cflib against the virtual swarm over UDP."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

from nanoswarm.config import ConfigError, from_mapping, to_mapping
from nanoswarm.export.onnx_export import action_metadata, export_onnx
from nanoswarm.firmware_bridge.errors import PolicyError
from nanoswarm.firmware_bridge.flight_log import FlightLog, read_events, read_tracks
from nanoswarm.firmware_bridge.keys import KeyWatcher
from nanoswarm.firmware_bridge.laptop import LaptopPolicy, observe_twins
from nanoswarm.firmware_bridge.links import LinkSender, Pacer
from nanoswarm.firmware_bridge.manifest import SwarmManifest, load_manifest
from nanoswarm.firmware_bridge.mission import (LaptopSettings, Mission, MissionSequencer, SafetyLimits,
                                               assign_slots, load_mission, plan_mission, travel_time)
from nanoswarm.firmware_bridge.plot import plot_flight
from nanoswarm.firmware_bridge.safety import flight_alerts, preflight_problems
from nanoswarm.firmware_bridge.status import status_table
from nanoswarm.firmware_bridge.telemetry import SUPERVISOR_BITS, Snapshot
from nanoswarm.policies import PolicyConfig
from nanoswarm.policies.policy import SwarmPolicy
from nanoswarm.sim.arena import load_arena
from nanoswarm.sim.dynamics import DroneState, action_for_thrust, hover_thrust
from nanoswarm.sim.interactions import pairwise
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.params import load_params, nominal_drone_params
from nanoswarm.sim.step import observe

# Live links with wall-clock timeouts: `make test` runs these alone, after the rest (see the Makefile).
pytestmark = pytest.mark.flight

ROOT = Path(__file__).resolve().parents[1]
MISSIONS = ROOT / "missions"
LAB = load_arena("lab4x3")


def field_error(name: str) -> str:
    return f"config field '{name}'"


def manifest_data(**changes) -> dict:
    data = yaml.safe_load((ROOT / "hardware" / "swarms" / "virtual8.yaml").read_text())
    data.update(changes)
    return data


def mission_data(name: str = "goal_swap", **changes) -> dict:
    data = yaml.safe_load((MISSIONS / f"{name}.yaml").read_text())
    data.update(changes)
    return data


def test_the_bridge_imports_cflib_without_turning_on_every_deprecation_warning():
    """cflib's package import sets `simplefilter('always', DeprecationWarning)` for the whole process; a training
    run, which imports the bridge through the CLI, then printed torch's deprecation notices. Fresh
    interpreters, since this one imported both long ago."""
    def filters_change(module: str) -> bool:
        code = f"import warnings; f = list(warnings.filters); import {module}; print(warnings.filters != f)"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              timeout=60).stdout.strip() == "True"

    assert filters_change("cflib") and not filters_change("nanoswarm.firmware_bridge")


# ------------------------------------------------------------------------------- manifests and missions
@pytest.mark.parametrize("swarm", ["cf8_lab", "virtual8"])
@pytest.mark.parametrize("mission", ["goal_swap", "formation"])
def test_shipped_manifests_and_missions_load_and_plan(swarm, mission):
    manifest = load_manifest(swarm)
    assert len(manifest.drones) == 8 and manifest.arena == "lab4x3"
    phases = plan_mission(load_mission(str(MISSIONS / f"{mission}.yaml")), manifest)
    assert phases[0].action == "takeoff" and phases[-1].action == "land"
    assert np.all(phases[-1].goals[:, 2] == 0.0)


def test_cf8_lab_spreads_its_drones_over_two_radios_on_one_channel():
    uris = [d.uri for d in load_manifest("cf8_lab").drones]
    assert {u.split("/")[2] for u in uris} == {"0", "1"} and {u.split("/")[3] for u in uris} == {"80"}
    assert [d.id for d in load_manifest("cf8_lab").drones] == [int(u.split("?")[0][-2:], 16) for u in uris]


@pytest.mark.parametrize("change, field", [
    (lambda d: d["drones"][1].update(id=1), "drones[1].id"),
    (lambda d: d["drones"][2].update(uri=d["drones"][0]["uri"]), "drones[2].uri"),
    (lambda d: d["drones"][0].update(uri="192.168.1.3:19850"), "drones[0].uri"),
    (lambda d: d["drones"][0].update(uri="radio://0/80/2M/E7E7"), "drones[0].uri"),
    (lambda d: d["drones"][3].update(start=[5.0, 0.0, 0.0]), "drones[3].start"),
    (lambda d: d["drones"][4].update(start=[-1.3, -0.6, 0.0]), "drones[4].start"),
    (lambda d: d["drones"][0].update(speed=1), "drones[0].speed"),
    (lambda d: d.update(telemetry_hz=500), "telemetry_hz"),
    (lambda d: d.update(arena="moon_base"), "arena"),
    (lambda d: d.update(mocap={"system": "kinect", "hostname": "x"}), "mocap.system"),
])
def test_bad_manifests_fail_on_load_naming_the_field(tmp_path, change, field):
    assert_refused_on_load(tmp_path, manifest_data(), change, load_manifest, field)


def assert_refused_on_load(tmp_path: Path, data: dict, change, load, field: str) -> None:
    """Write `data` after `change` as YAML and check that `load` refuses it naming `field`."""
    change(data)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=field_error(field).replace("[", r"\[").replace("]", r"\]")):
        load(str(path))


@pytest.mark.parametrize("change, field", [
    (lambda d: d["steps"].pop(0), "steps[0].action"),
    (lambda d: d["steps"].pop(), "steps[3].action"),
    (lambda d: d["steps"][1].update(pairs=[[1, 2]]), "steps[1].pairs"),
    (lambda d: d["steps"][2].pop("pairs"), "steps[2].pairs"),
    (lambda d: d["steps"][2].update(pairs=[[1, 5], [5, 2]]), "steps[2].pairs"),
    (lambda d: d["steps"].insert(2, {"action": "formation", "shape": "heart", "center": [0, 0, 1], "spacing": 1}),
     "steps[2].shape"),
    (lambda d: d["steps"][0].update(height=-1), "steps[0].height"),
    (lambda d: d.update(mode="autopilot"), "mode"),
    (lambda d: d.update(on_link_loss="panic"), "on_link_loss"),
    (lambda d: d.update(command_hz=2), "command_hz"),
    (lambda d: d.update(safety={"land_battery_v": 3.9}), "safety.land_battery_v"),
])
def test_bad_missions_fail_on_load_naming_the_field(tmp_path, change, field):
    assert_refused_on_load(tmp_path, mission_data(), change, load_mission, field)


@pytest.mark.parametrize("change, field, words", [
    (lambda d: d["steps"][1]["goals"][0].update(id=42), "steps[1].goals[0].id", "no drone 42"),
    (lambda d: d["steps"][1]["goals"][0].update(at=[3.0, 0.0, 1.0]), "steps[1]", "outside arena 'lab4x3'"),
    (lambda d: d["steps"][1]["goals"][1].update(at=[-1.2, -0.6, 0.7]), "steps[1]", "0.10 m apart"),
    (lambda d: d["steps"][0].update(height=2.4), "steps[0].height", "flight heights"),
    (lambda d: d["steps"][2].update(pairs=[[1, 9]]), "steps[2].pairs[0]", "no drone 9"),
])
def test_missions_that_do_not_fit_the_swarm_fail_before_connecting(change, field, words):
    data = mission_data()
    change(data)
    mission = from_mapping(Mission, data)
    with pytest.raises(ConfigError, match=field_error(field).replace("[", r"\[").replace("]", r"\]")) as err:
        plan_mission(mission, load_manifest("virtual8"))
    assert words in str(err.value) and "goal_swap" in str(err.value)


def test_swap_exchanges_horizontal_goals_and_each_drone_keeps_its_altitude():
    phases = plan_mission(load_mission(str(MISSIONS / "goal_swap.yaml")), load_manifest("virtual8"))
    layers, swapped = phases[1].goals, phases[2].goals
    for a, b in ((0, 4), (1, 5), (2, 6), (3, 7)):
        np.testing.assert_allclose(swapped[a, :2], layers[b, :2])
        np.testing.assert_allclose(swapped[b, :2], layers[a, :2])
    np.testing.assert_allclose(swapped[:, 2], layers[:, 2])


def test_formation_slots_go_to_the_nearest_drones():
    drones = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    slots = np.array([[2.1, 0.0, 1.0], [0.0, 2.1, 1.0], [0.1, 0.0, 1.0]])
    np.testing.assert_allclose(assign_slots(drones, slots), slots[[2, 0, 1]])


def test_go_to_durations_keep_the_commanders_peak_speed_under_max_speed():
    # The 7th-order go-to polynomial peaks at 35/16 of its mean speed.
    duration = travel_time(np.zeros(3), np.array([1.0, 0.0, 0.0]), max_speed=0.5)
    assert (1.0 / duration) * 35.0 / 16.0 == pytest.approx(0.5)
    assert travel_time(np.zeros(3), np.zeros(3), max_speed=0.5) == 1.0


# ------------------------------------------------------------------------------------ mission sequencing
def three_drone_plan(**steps_changes) -> tuple[list, MissionSequencer]:
    manifest = from_mapping(SwarmManifest, manifest_data(drones=manifest_data()["drones"][:3]))
    mission = from_mapping(Mission, {
        "name": "t", "goal_tolerance": 0.1, "steps": [
            {"action": "takeoff", "height": 1.0, "duration_s": 2.0},
            {"action": "goals", "goals": [{"id": 1, "at": [0.0, 0.0, 1.0]}], "timeout_s": 5.0},
            {"action": "hold", "duration_s": 1.0},
            {"action": "land", "duration_s": 2.0}]})
    phases = plan_mission(mission, manifest)
    return phases, MissionSequencer(phases, tolerance=0.1, landed_height=0.08)


def test_sequencer_waits_for_every_active_drone_then_moves_on():
    phases, seq = three_drone_plan()
    active = np.ones(3, bool)
    seq.start(0.0)
    at_height = phases[0].goals
    assert seq.update(1.0, at_height, active) is None, "takeoff waits out its commander duration"
    assert seq.update(2.5, at_height + [0, 0, 0.3], active) is None, "and for every drone at height"
    transition = seq.update(2.6, at_height, active)
    assert transition.ended.action == "takeoff" and transition.current.action == "goals"
    assert seq.update(3.0, at_height, active) is None, "drone 1 is not at its goal yet"
    transition = seq.update(3.5, phases[1].goals + 0.05, active)
    assert transition.current.action == "hold" and not transition.timed_out
    assert seq.update(4.4, phases[1].goals, active) is None
    assert seq.update(4.6, phases[1].goals, active).current.action == "land"
    assert seq.update(7.0, phases[3].goals + [0, 0, 0.05], active).current is None
    assert seq.finished
    assert seq.goals_reached() == (3, 3)


def test_a_missed_goal_times_out_is_reported_and_the_mission_flies_on():
    phases, seq = three_drone_plan()
    active = np.ones(3, bool)
    seq.start(0.0)
    seq.update(2.5, phases[0].goals, active)
    stuck = phases[1].goals.copy()
    stuck[0] += [0.5, 0.0, 0.0]
    assert seq.update(7.4, stuck, active) is None
    transition = seq.update(7.6, stuck, active)
    assert transition.timed_out and transition.current.action == "hold"
    assert transition.reached.tolist() == [False, True, True]
    assert seq.goals_reached() == (2, 3)


def test_lost_drones_do_not_hold_a_phase_up():
    phases, seq = three_drone_plan()
    seq.start(0.0)
    positions = phases[0].goals.copy()
    positions[2] = np.nan
    transition = seq.update(2.1, positions, np.array([True, True, False]))
    assert transition is not None and not transition.timed_out


def test_land_now_abandons_the_plan_and_lands_where_the_drones_are():
    phases, seq = three_drone_plan()
    seq.start(0.0)
    here = np.array([[0.3, 0.2, 1.1], [np.nan, np.nan, np.nan], [-0.5, 0.1, 0.9]])
    landing = seq.land_now(1.0, here, step=3)
    assert landing.action == "land" and seq.phase is landing
    np.testing.assert_allclose(landing.goals[0], [0.3, 0.2, 0.0])
    np.testing.assert_allclose(landing.goals[1], [*phases[0].goals[1, :2], 0.0])
    assert seq.update(3.5, landing.goals, np.ones(3, bool)).current is None


# ---------------------------------------------------------------------------------------- safety rules
def good_snapshot(pos, now: float = 10.0, **changes) -> Snapshot:
    flags = 1 << SUPERVISOR_BITS["can_fly"] | 1 << SUPERVISOR_BITS["armed"]
    values = dict(received=now, pos=np.asarray(pos, float), vel=np.zeros(3), status_received=now, vbat=4.1,
                  pm_state=0, supervisor=flags, position_std=0.01, app_mode=0, samples=50)
    values.update(changes)
    return Snapshot(**values)


def preflight(snaps, mode="stock", missing=None, limits=SafetyLimits()):
    manifest = load_manifest("virtual8")
    specs = list(manifest.drones)[:len(snaps)]
    return preflight_problems(snaps, specs, [d.uri for d in specs], missing or [[] for _ in snaps], LAB, limits,
                              mode, manifest.min_separation)


def starts(n: int) -> list[tuple[float, float, float]]:
    return [d.start for d in load_manifest("virtual8").drones][:n]


def test_preflight_passes_a_ready_swarm():
    assert preflight([good_snapshot(p) for p in starts(8)]) == []


@pytest.mark.parametrize("change, words", [
    (dict(vbat=3.6), "battery at 3.60 V"),
    (dict(pm_state=1), "unplug the charger"),
    (dict(position_std=0.2), "position estimate not converged"),
    (dict(position_std=math.nan), "position estimate not converged"),
    (dict(supervisor=1 << SUPERVISOR_BITS["locked"]), "['locked']"),
    (dict(supervisor=1 << SUPERVISOR_BITS["tumbled"]), "['tumbled']"),
    (dict(supervisor=0), "cannot fly"),
    (dict(samples=0, vbat=math.nan), "no telemetry"),
    (dict(pos=np.array([2.5, 0.0, 0.0])), "outside arena 'lab4x3'"),
    (dict(pos=np.array([0.4, 0.6, 0.0])), "from its manifest start"),
])
def test_preflight_refuses_with_the_drone_and_the_reason(change, words):
    snaps = [good_snapshot(p) for p in starts(3)]
    snaps[1] = dataclasses.replace(snaps[1], **change)
    problems = preflight(snaps)
    assert problems and all(p.startswith("drone 2 (udp://127.0.0.1:19851)") for p in problems if "drone 3" not in p)
    assert any(words in p for p in problems), problems


def test_preflight_refuses_drones_too_close_together():
    snaps = [good_snapshot(p) for p in starts(2)]
    snaps[1] = dataclasses.replace(snaps[1], pos=np.array([-1.1, -0.6, 0.0]))
    assert any("closer than min_separation" in p for p in preflight(snaps))


def test_preflight_of_onboard_mode_needs_the_app_and_laptop_mode_the_attitude():
    snaps = [good_snapshot(p) for p in starts(1)]
    assert "flash the nanoswarm app" in preflight(snaps, "onboard", [["nanoswarm.mode"]])[0]
    assert preflight(snaps, "stock", [["nanoswarm.mode"]]) == []
    assert "gyro.x" in preflight(snaps, "laptop", [["gyro.x"]])[0]


def test_flight_alerts_name_the_drone_and_the_rule():
    limits = SafetyLimits()
    now = 10.0
    snaps = [good_snapshot([0, 0, 1], now),
             good_snapshot([0.5, 0, 1], now - 0.6),                       # silent for 0.6 s
             good_snapshot([-0.5, 0, 1], now, vbat=3.1),                  # low battery
             good_snapshot([1.95, 0, 1], now),                            # past the geofence
             good_snapshot([0, 0.5, 1], now)]
    alerts = flight_alerts(snaps, [None, None, None, None, "link lost: Too many packets lost"],
                           [True] * 5, now, LAB, limits)
    assert [(a.kind, a.drone) for a in alerts] == [("link_lost", 1), ("battery", 2), ("geofence", 3),
                                                   ("link_lost", 4)]
    assert "no telemetry for 0.60 s" in alerts[0].message and "Too many packets lost" in alerts[3].message
    assert flight_alerts(snaps, [None] * 5, [True, False, False, False, True], now, LAB, limits) == []


# ------------------------------------------------------------------------------ logs, plot, status, keys
def test_flight_log_records_telemetry_and_events_and_plots_them(tmp_path):
    log = FlightLog(tmp_path, [1, 2], start=100.0)
    for k in range(20):
        for drone, x in ((1, -0.5), (2, 0.5)):
            log.telemetry(drone, "state", 100.0 + 0.05 * k, {
                "stateEstimate.x": x, "stateEstimate.y": 0.02 * k, "stateEstimate.z": min(1.0, 0.1 * k),
                "stateEstimate.vx": 0.0, "stateEstimate.vy": 0.4, "stateEstimate.vz": 0.0})
        log.telemetry(1, "status", 100.0 + 0.05 * k, {"pm.vbat": 4.0})
    log.event("phase", "0:takeoff begins", now=100.0)
    log.event("battery", "battery at 3.10 V", drone_id=2, now=100.5)
    log.close()
    tracks = read_tracks(tmp_path)
    assert sorted(tracks) == [1, 2] and tracks[1].pos.shape == (20, 3)
    assert tracks[2].t[5] == pytest.approx(0.25) and tracks[2].pos[19, 2] == pytest.approx(1.0)
    events = read_events(tmp_path)
    assert [(e.t, e.drone, e.kind) for e in events] == [(0.0, None, "phase"), (0.5, 2, "battery")]
    png = plot_flight(tmp_path, LAB, title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_status_table_shows_every_drone_with_its_link_battery_position_and_state():
    snaps = [good_snapshot([0.1, -0.2, 1.0], 9.95, link_quality=97.0, app_mode=1), Snapshot()]
    console = Console(record=True, width=140)
    console.print(status_table([1, 2], snaps, ["flying", "lost"], 10.0, "2:swap", 12.3, battery_warn_v=3.4))
    text = console.export_text()
    assert "2:swap" in text and "POLICY" in text and "flying" in text and "lost" in text
    row = next(line for line in text.splitlines() if "POLICY" in line)
    for cell in ("97", "50", "4.10", "+0.10", "-0.20", "+1.00"):
        assert cell in row


def test_any_key_on_the_terminal_is_an_emergency_stop():
    master, slave = pty.openpty()
    pressed = threading.Event()
    with os.fdopen(slave, "r") as terminal, KeyWatcher(terminal, pressed) as watcher:
        assert watcher.active
        assert not pressed.wait(0.2)
        os.write(master, b" ")
        assert pressed.wait(2.0)
    os.close(master)


def test_a_stream_sends_only_its_latest_value_and_closing_drains_the_queue():
    sent: list[tuple[str, int]] = []
    gate = threading.Event()
    sender = LinkSender("t", on_error=lambda err: None)
    sender.post(lambda: (gate.wait(2.0), sent.append(("once", 0))))    # holds the sender, like a blocked radio
    for k in range(5):
        sender.stream("setpoint", lambda k=k: sent.append(("setpoint", k)))
    sender.post(lambda: sent.append(("once", 1)))
    gate.set()
    sender.close()
    assert sent == [("once", 0), ("once", 1), ("setpoint", 4)]


def test_a_halted_sender_drops_what_is_pending_and_accepts_nothing():
    sent = []
    gate = threading.Event()
    sender = LinkSender("t", on_error=lambda err: None)
    sender.post(lambda: gate.wait(2.0))
    sender.stream("setpoint", lambda: sent.append("late setpoint"))
    sender.halt()
    sender.post(lambda: sent.append("after halt"))
    gate.set()
    sender.close()
    assert sent == []


@pytest.mark.parametrize("hz, expected", [(50.0, 50), (10.0, 10), (20.0, 20)])
def test_a_pacer_holds_its_rate_in_a_jittery_loop_of_the_same_rate_or_faster(hz, expected):
    pacer = Pacer(hz, loop_hz=50.0)
    rng = np.random.default_rng(0)
    ticks = np.arange(500) * 0.02 + rng.uniform(-0.004, 0.004, 500)     # 10 s of a 50 Hz loop, +-4 ms jitter
    assert sum(pacer.due(t) for t in ticks) == pytest.approx(expected * 10, abs=2)


# ----------------------------------------------------------------------------------- laptop in the loop
def random_twins(m: int, seed: int) -> DroneState:
    g = torch.Generator().manual_seed(seed)
    quat = torch.randn(m, 4, generator=g) * 0.1
    quat[:, 0] = 1.0
    quat = quat / quat.norm(dim=-1, keepdim=True)
    return DroneState(pos=torch.rand(m, 3, generator=g) * 2.0, vel=torch.randn(m, 3, generator=g) * 0.3, quat=quat,
                      omega=torch.randn(m, 3, generator=g) * 0.2, thrust=torch.zeros(m, 4),
                      motor_noise=torch.zeros(m, 4))


def test_twin_observations_are_the_simulators_observations():
    layout = ObservationLayout(num_neighbors=2)
    state = random_twins(5, seed=1)
    goals = torch.rand(5, 3)
    mine = observe_twins(state, goals, layout, absent_distance=4.0, sense_range=0.5)
    batched = DroneState(**{k: v.unsqueeze(0) for k, v in state.__dict__.items()})
    grid = torch.full((1, 5, 9), 0.5)
    reference = observe(batched, goals.unsqueeze(0), pairwise(batched.pos, batched.vel), grid, 2, None)[0]
    torch.testing.assert_close(mine, reference)


def test_missing_neighbours_are_observed_far_ahead_keeping_pace_as_onboard():
    layout = ObservationLayout(num_neighbors=3)
    state = random_twins(2, seed=2)
    obs = observe_twins(state, torch.zeros(2, 3), layout, absent_distance=4.0, sense_range=0.5)
    neighbors = obs[:, layout.slices["neighbors"]].reshape(2, 3, 6)
    torch.testing.assert_close(neighbors[0, 0, :3], state.pos[1] - state.pos[0])
    torch.testing.assert_close(neighbors[:, 1:], torch.tensor([4.0, 0, 0, 0, 0, 0]).expand(2, 2, 6))


@pytest.fixture(scope="module")
def exported_policy(tmp_path_factory) -> Path:
    """An untrained policy (hover bias) for 8 drones with K = 2, as `nanoswarm export` writes it: ONNX and C."""
    from nanoswarm.export.codegen import generate_c

    quad = load_params("crazyflie21_sysid")
    params = nominal_drone_params(quad, 1, 0.005)
    hover = float(action_for_thrust(hover_thrust(params), params)[0, 0])
    torch.manual_seed(0)
    policy = SwarmPolicy(ObservationLayout(2), PolicyConfig(hidden=8, head=(16,)), hover)
    folder = tmp_path_factory.mktemp("policy")
    model = export_onnx(policy, folder / "policy.onnx", source_sha256="0" * 64, action_meta=action_metadata(quad))
    generate_c(model, folder / "c")
    return folder


def test_laptop_twins_start_where_the_drones_are_and_stream_their_short_horizon_state(exported_policy):
    policy = LaptopPolicy(exported_policy, LaptopSettings(horizon_s=0.05), drones=3)
    pos = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.2]])
    vel = np.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -0.2, 0.0]])
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (3, 1))
    twin = policy.rollout(np.array([0, 2]), pos[[0, 2]], vel[[0, 2]], quat[[0, 2]], np.zeros((2, 3)),
                          pos[[0, 2]], carry_s=0.02)
    assert twin.pos.shape == (2, 3) and np.isfinite(twin.acc).all()
    # A hovering policy keeps the drones' momentum over the short horizon: where they are plus v * t.
    np.testing.assert_allclose(twin.pos, pos[[0, 2]] + vel[[0, 2]] * 0.05, atol=0.02)
    np.testing.assert_allclose(np.linalg.norm(twin.quat, axis=1), 1.0, atol=1e-5)


def test_laptop_mode_refuses_a_missing_policy_or_another_airframe(exported_policy, tmp_path):
    with pytest.raises(PolicyError, match="nanoswarm export"):
        LaptopPolicy(tmp_path, LaptopSettings(), drones=2)
    with pytest.raises(PolicyError, match="thrust_curve"):
        LaptopPolicy(exported_policy, LaptopSettings(params="l2f_2023"), drones=2)


def test_mode_override_keeps_the_rest_of_the_mission():
    mission = load_mission(str(MISSIONS / "goal_swap.yaml"))
    changed = from_mapping(Mission, {**to_mapping(mission), "mode": "stock"})
    assert changed.mode == "stock" and changed.steps == mission.steps and json.dumps(to_mapping(changed))


# ------------------------------------------------------- whole flights: real cflib, virtual swarm over UDP
# Each flight runs in real time against `VirtualSwarm` (the simulator behind stock-cflib-compatible
# Crazyflies on loopback UDP): missions here are short, and tolerances allow for its hover wander.
from nanoswarm.firmware_bridge.errors import ConnectError, PreflightError  # noqa: E402
from nanoswarm.firmware_bridge.fly import FlightSummary, run_fly  # noqa: E402
from nanoswarm.firmware_bridge.links import close_all, connect_swarm  # noqa: E402
from nanoswarm.firmware_bridge.telemetry import DroneTelemetry  # noqa: E402
from nanoswarm.firmware_bridge.virtual import LinkFaults, VirtualSwarm  # noqa: E402

FLIGHT_DEADLINE_S = 120.0   # a flight thread still running then has hung


def free_base_port(n: int) -> int:
    """A base port with n free UDP ports above it (tests may run side by side)."""
    import random
    import socket

    for _ in range(100):
        base = random.randrange(30000, 60000 - n)   # test_virtual_swarm's fixed ports sit below 30000
        sockets = []
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free UDP ports")


def small_manifest(n: int, **changes) -> SwarmManifest:
    data = manifest_data(drones=manifest_data()["drones"][:n], connect_timeout_s=3.0, connect_retries=1)
    data.update(changes)
    return from_mapping(SwarmManifest, data)


# Link loss is judged after this long without telemetry in the tests, not the 0.5 s a real mission defaults to:
# the virtual swarm shares a 2-core CI machine with another test worker, and stalls of 0.51-0.54 s (all drones
# at once, while the other worker compiled) were seen there. Those come from the CPU, not from a link; the
# tests that silence a drone still see it detected well within their mission.
TEST_TELEMETRY_TIMEOUT_S = 1.5


def short_mission(mode: str = "stock", middle: list | None = None, **changes) -> Mission:
    data = {"name": "short", "mode": mode, "goal_tolerance": 0.3, "max_speed": 1.0,
            "safety": {"preflight_timeout_s": 2.0, "telemetry_timeout_s": TEST_TELEMETRY_TIMEOUT_S},
            "steps": [{"action": "takeoff", "height": 0.8, "duration_s": 1.5, "timeout_s": 6.0},
                      *(middle if middle is not None else [{"action": "hold", "duration_s": 1.5}]),
                      {"action": "land", "duration_s": 1.5, "timeout_s": 6.0}]}
    data.update(changes)
    return from_mapping(Mission, data)


@pytest.fixture(scope="module")
def toc_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("toc_cache")


def virtual_swarm(manifest: SwarmManifest, **kwargs) -> VirtualSwarm:
    return VirtualSwarm(len(manifest.drones), base_port=free_base_port(len(manifest.drones)),
                        start_positions=np.array([d.start for d in manifest.drones]), **kwargs)


class Flying:
    """`run_fly` on a thread, so the test can act on the swarm while the mission flies."""

    def __init__(self, manifest, mission, swarm, log_dir, toc_cache, **kwargs):
        self.stop = threading.Event()
        self.result: FlightSummary | BaseException | None = None
        self.log_dir = Path(log_dir)

        def fly():
            try:
                self.result = run_fly(manifest, mission, log_dir, virtual=swarm, stop=self.stop,
                                      toc_cache=toc_cache, **kwargs)
            except BaseException as err:  # handed to the test
                self.result = err

        self.thread = threading.Thread(target=fly, daemon=True)
        self.thread.start()

    def wait_until(self, condition, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.thread.is_alive(), f"the flight ended early: {self.result!r}"
            assert time.monotonic() < deadline, "timed out waiting for the flight"
            time.sleep(0.01)

    def event_seen(self, kind: str) -> bool:
        path = self.log_dir / "events.jsonl"
        return path.is_file() and any(json.loads(line)["kind"] == kind for line in path.read_text().splitlines())

    def summary(self) -> FlightSummary:
        self.thread.join(FLIGHT_DEADLINE_S)
        assert not self.thread.is_alive(), "the flight hung"
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def events_of(summary: FlightSummary) -> list:
    return read_events(Path(summary.log_dir))


def test_eight_drones_connect_log_take_params_and_fly_a_goal_swap(tmp_path, toc_cache):
    manifest = small_manifest(8)
    layers = [{"id": d.id, "at": [d.start[0], d.start[1], 0.6 if d.id <= 4 else 1.2]} for d in manifest.drones]
    mission = short_mission("stock", [{"action": "goals", "goals": layers, "timeout_s": 8.0},
                                      {"action": "swap", "pairs": [[1, 5], [2, 6], [3, 7], [4, 8]], "timeout_s": 10.0}])
    with virtual_swarm(manifest) as swarm:
        summary = run_fly(manifest, mission, tmp_path / "flight", virtual=swarm, toc_cache=toc_cache)
        final = swarm.positions()
        # The same drones through the bridge's own links and log blocks, after the flight (cached TOCs now).
        links = connect_swarm(list(manifest.drones), swarm.uris, 3.0, 1, toc_cache)
        try:
            telemetry = [DroneTelemetry(link, 50.0, attitude=True) for link in links]
            for t in telemetry:
                t.start()
            links[3].set_param("kalman.resetEstimation", 1)      # waits for the drone's echo
            time.sleep(0.5)
            snaps = [t.snapshot() for t in telemetry]
            assert all(t.missing == ["nanoswarm.mode"] for t in telemetry), "no app without a policy"
            np.testing.assert_allclose([s.pos for s in snaps], swarm.positions(), atol=0.05)
            # telemetry flows and the battery reads like a Li-Po (the flight drained it some; a loaded
            # machine slows the swarm, so only a few samples are certain in the 0.5 s)
            assert all(s.samples >= 3 and 3.0 < s.vbat <= 4.2 for s in snaps), [(s.samples, s.vbat) for s in snaps]
            np.testing.assert_allclose(np.linalg.norm([s.quat for s in snaps], axis=1), 1.0, atol=1e-4)
            for t in telemetry:
                t.stop()
        finally:
            close_all(links)
    assert summary.completed and summary.aborted is None, events_of(summary)
    assert summary.goals_reached >= 0.8 * summary.goals_asked and summary.goals_asked == 16
    # Stock mode flies every drone straight at its goal, with no avoidance: the closest pair is the stock
    # controller's wander (0.27-0.32 m on a quiet machine, 0.23 m in a loaded CI run), so the bar is the
    # drones' contact distance (2 x 0.063 m) with a margin, not a spacing the stock controller cannot promise.
    assert summary.collisions == 0 and summary.min_separation_m > 0.15 and summary.link_losses == 0
    swapped = {1: 5, 2: 6, 3: 7, 4: 8, 5: 1, 6: 2, 7: 3, 8: 4}
    for i, drone in enumerate(manifest.drones):
        partner = manifest.drones[manifest.ids.index(swapped[drone.id])]
        np.testing.assert_allclose(final[i, :2], partner.start[:2], atol=0.4)
        assert final[i, 2] < 0.1
    folder = Path(summary.log_dir)
    assert {p.name for p in folder.iterdir()} >= {"events.jsonl", "manifest.yaml", "mission.yaml", "summary.json",
                                                 "flight.png", *(f"telemetry_{i}.jsonl" for i in range(1, 9))}
    assert [e.message for e in events_of(summary) if e.kind == "phase"][-1] == "3:land ended"


def _swarm_watching_for_a_stop(n: int, base_port: int, starts: list, ready, airborne, stopped, released) -> None:
    """Child process: a virtual swarm that reports when all its drones are airborne, then the monotonic time
    (system-wide) at which every drone's supervisor has cut its motors; like real drones after an emergency
    stop, it keeps answering until the test releases it."""
    with VirtualSwarm(n, base_port=base_port, start_positions=np.array(starts)) as swarm:
        ready.set()
        while swarm.positions()[:, 2].min() < 0.5:
            time.sleep(0.005)
        airborne.set()
        deadline = time.monotonic() + 30.0
        cut = None
        while time.monotonic() < deadline and cut is None:
            if all(s.state in ("EXCEPT_FREE_FALL", "LOCKED") for s in swarm.states()):
                cut = time.monotonic()
            time.sleep(0.001)
        stopped.put(cut)
        released.wait(60.0)


def test_a_key_stops_every_motor_within_100_ms(tmp_path, toc_cache):
    """Any key on the flight's terminal is an emergency stop. The issue's own real-time bound: 100 ms from the
    keypress until every drone's supervisor has cut its motors (a drone locks after an emergency stop). The
    virtual swarm runs in its own process, as drones have their own processors, so the bound is on the wall
    clock across both."""
    import multiprocessing

    manifest = small_manifest(8)
    base_port = free_base_port(8)
    manifest = from_mapping(SwarmManifest, {**to_mapping(manifest), "drones": [
        {**to_mapping(d), "uri": f"udp://127.0.0.1:{base_port + i}"} for i, d in enumerate(manifest.drones)]})
    spawn = multiprocessing.get_context("spawn")
    ready, airborne, stopped, released = spawn.Event(), spawn.Event(), spawn.Queue(), spawn.Event()
    child = spawn.Process(target=_swarm_watching_for_a_stop, daemon=True, args=(
        8, base_port, [d.start for d in manifest.drones], ready, airborne, stopped, released))
    child.start()
    master, slave = pty.openpty()
    try:
        assert ready.wait(60.0), "the virtual swarm's process did not start"
        with os.fdopen(slave, "r") as terminal:
            flight = Flying(manifest, short_mission(middle=[{"action": "hold", "duration_s": 30.0}]), None,
                            tmp_path, toc_cache, keys=terminal)
            flight.wait_until(airborne.is_set)
            requested = time.monotonic()
            os.write(master, b"x")                      # any key on the terminal running the flight
            cut = stopped.get(timeout=35.0)
            summary = flight.summary()
    finally:
        os.close(master)
        released.set()
        child.join(timeout=10.0)
    assert cut is not None, "the motors were never cut"
    assert cut - requested < 0.1, f"motors cut {(cut - requested) * 1000:.0f} ms after the key"
    assert summary.emergency_stop_s < 0.1 and summary.aborted.startswith("emergency stop") and not summary.completed
    assert [e.kind for e in events_of(summary)][-1] == "emergency_stop"


@pytest.mark.parametrize("rule", ["land_all", "continue"])
def test_a_silent_drone_is_detected_and_the_rest_follow_the_rule(tmp_path, toc_cache, rule):
    manifest = small_manifest(3)
    mission = short_mission(middle=[{"action": "hold", "duration_s": 3.0}], on_link_loss=rule)
    with virtual_swarm(manifest) as swarm:
        flight = Flying(manifest, mission, swarm, tmp_path, toc_cache)
        flight.wait_until(lambda: swarm.positions()[:, 2].min() > 0.6)
        swarm.set_silent(1, True)
        summary = flight.summary()
        final = swarm.positions()
    lost = [e for e in events_of(summary) if e.kind == "link_lost"]
    assert [e.drone for e in lost] == [2] and summary.link_losses == 1
    assert final[[0, 2], 2].max() < 0.1, "the others landed"
    if rule == "land_all":
        assert summary.aborted == "link to drone 2 lost" and not summary.completed
        assert [e.kind for e in events_of(summary)].index("land_all") == [e.kind for e in events_of(summary)].index(
            "link_lost") + 1
    else:
        assert summary.completed and summary.aborted is None
        phases = [e.message for e in events_of(summary) if e.kind == "phase"]
        assert "1:hold ended" in phases and phases[-1] == "2:land ended"


def test_a_low_battery_lands_that_drone_and_the_rest_fly_on(tmp_path, toc_cache):
    """The hold outlasts the battery landing (3.6-4.2 s measured from the sag, with the controller's gains
    of 2026-11-22 and before): with a 3 s hold the mission's own landing could begin first, under load."""
    manifest = small_manifest(2)
    with virtual_swarm(manifest) as swarm:
        flight = Flying(manifest, short_mission(middle=[{"action": "hold", "duration_s": 6.0}]), swarm, tmp_path,
                        toc_cache)
        flight.wait_until(lambda: swarm.positions()[:, 2].min() > 0.6)
        swarm.sag_battery(0, 1.0)
        flight.wait_until(lambda: flight.event_seen("landed"), timeout_s=10.0)
        assert swarm.positions()[1, 2] > 0.6, "the other drone still flies"
        summary = flight.summary()
    battery = [e for e in events_of(summary) if e.kind == "battery"]
    assert [e.drone for e in battery] == [1] and "land_battery_v 3.2 V" in battery[0].message
    assert summary.battery_landings == 1 and summary.completed


def test_ten_percent_packet_loss_both_ways_still_completes_the_mission(tmp_path, toc_cache):
    """Loss starts once connected: cflib's UDP link has no resends, so a lost TOC reply would stall the
    connect itself, where a radio resends at the link level."""
    manifest = small_manifest(4)
    goals = [{"id": d.id, "at": [d.start[0], -d.start[1], 1.0]} for d in manifest.drones]
    # (At TEST_TELEMETRY_TIMEOUT_S, 10 % loss alone would take 30 lost 20 Hz telemetry packets in a row.)
    mission = short_mission(middle=[{"action": "goals", "goals": goals, "timeout_s": 10.0}])
    with virtual_swarm(manifest, seed=3) as swarm:
        flight = Flying(manifest, mission, swarm, tmp_path, toc_cache)
        flight.wait_until(lambda: flight.event_seen("preflight"))
        swarm.set_link_faults(LinkFaults(loss=0.1))
        summary = flight.summary()
        final = swarm.positions()
    assert summary.completed and summary.link_losses == 0, events_of(summary)
    assert summary.goals_reached == summary.goals_asked == 4
    np.testing.assert_allclose(final[:, :2], [[g["at"][0], g["at"][1]] for g in goals], atol=0.4)
    assert final[:, 2].max() < 0.1


def test_connect_names_every_drone_that_failed_and_why(toc_cache):
    manifest = small_manifest(3, connect_timeout_s=1.0, connect_retries=1)
    with virtual_swarm(manifest) as swarm:
        swarm.set_link_faults(LinkFaults(loss=1.0), drones=[1], direction="up")   # hears nothing
        swarm.set_silent(2, True)                                                 # port closed
        started = time.monotonic()
        with pytest.raises(ConnectError) as err:
            connect_swarm(list(manifest.drones), swarm.uris, 1.0, 1, toc_cache)
        took = time.monotonic() - started
    message = str(err.value)
    assert "2 of 3 drones did not connect" in message
    assert f"drone 2 ({swarm.uris[1]}): attempt 1: no complete answer within 1 s" in message
    assert "attempt 2:" in message and f"drone 3 ({swarm.uris[2]}): attempt 1:" in message
    assert "drone 1 " not in message
    # Two attempts of at most 1 s each, plus cflib's close (up to 1 s), for both failed drones in parallel.
    assert took < 8.0, "attempts are bounded by their deadlines"


def test_preflight_refuses_swapped_drones_and_nothing_takes_off(tmp_path, toc_cache):
    manifest = small_manifest(2)
    starts_swapped = np.array([manifest.drones[1].start, manifest.drones[0].start])
    with VirtualSwarm(2, base_port=free_base_port(2), start_positions=starts_swapped) as swarm:
        with pytest.raises(PreflightError, match="from its manifest start") as err:
            run_fly(manifest, short_mission(safety={"preflight_timeout_s": 0.5}), tmp_path, virtual=swarm,
                    toc_cache=toc_cache)
        time.sleep(0.3)
        assert swarm.positions()[:, 2].max() < 0.01 and not any(s.flying for s in swarm.states())
    assert "drone 1 (" in str(err.value) and "drone 2 (" in str(err.value)
    assert any(e.kind == "preflight" for e in read_events(tmp_path))


def test_onboard_mode_streams_goals_that_the_app_flies_then_lands_on_its_own(tmp_path, toc_cache, exported_policy):
    """Plumbing of the onboard path with an untrained policy: the goal packets arrive (the app flies POLICY),
    the bridge wrote the app's id, and the app's own landing (LAND) brings the drones down."""
    manifest = small_manifest(2)
    mission = short_mission("onboard", middle=[{"action": "hold", "duration_s": 1.0}])
    seen: list[set[str]] = [set(), set()]
    with virtual_swarm(manifest, policy_dir=exported_policy) as swarm:
        flight = Flying(manifest, mission, swarm, tmp_path, toc_cache)
        while flight.thread.is_alive():
            for i, state in enumerate(swarm.states()):
                seen[i].add(state.mode)
            time.sleep(0.01)
        summary = flight.summary()
        final = swarm.positions()
    # The bridge counts a drone landed below landed_height (8 cm), the app below its landCutZ (5 cm).
    assert all({"IDLE", "POLICY"} <= modes and modes & {"LAND", "LANDED"} for modes in seen), seen
    params = [e.message for e in events_of(summary) if e.kind == "param"]
    assert "drone 2: nanoswarm.id = 2" in params and "drone 1: stabilizer.controller = 6" in params
    assert summary.stream_hz["app"] == pytest.approx(mission.command_hz, rel=0.3) and final[:, 2].max() < 0.1


def test_laptop_mode_flies_twins_and_streams_their_full_state(tmp_path, toc_cache, exported_policy):
    """Plumbing of laptop-in-the-loop with an untrained (hover-biased) policy: during the policy phase the
    drones fly the streamed full-state setpoints (the commander holds a streamed setpoint, not its own plan)
    and stay in the air; landing hands them back to the commander."""
    manifest = small_manifest(2)
    mission = short_mission("laptop", middle=[{"action": "hold", "duration_s": 2.0}], loop_hz=20.0,
                            laptop={"horizon_s": 0.05})
    streamed, heights = [], []
    with virtual_swarm(manifest) as swarm:
        flight = Flying(manifest, mission, swarm, tmp_path, toc_cache, policy_dir=exported_policy)
        while flight.thread.is_alive():
            text = (tmp_path / "events.jsonl").read_text() if (tmp_path / "events.jsonl").is_file() else ""
            if "1:hold begins" in text and "2:land begins" not in text:
                streamed.append(bool(np.all(swarm.commander.priority == 2)))   # PRIORITY_STREAM
                heights.append(swarm.positions()[:, 2].min())
            time.sleep(0.02)
        summary = flight.summary()
        final = swarm.positions()
    assert summary.completed, events_of(summary)
    assert sum(streamed) > 0.8 * len(streamed) > 10, "the drones flew streamed setpoints through the hold"
    assert min(heights) > 0.4 and final[:, 2].max() < 0.1
    assert summary.stream_hz["setpoint"] > 5


def test_dry_run_starts_its_own_virtual_swarm_streams_mocap_and_shows_the_live_table(tmp_path, toc_cache):
    manifest = small_manifest(2, mocap={"system": "vicon", "hostname": "unused", "rate_hz": 50.0})
    console = Console(record=True, width=120, force_terminal=True)
    summary = run_fly(manifest, short_mission(), tmp_path / "flight", dry_run=True, toc_cache=toc_cache,
                      virtual_base_port=free_base_port(2), console=console)
    shown = console.export_text()
    assert "nanoswarm fly" in shown and "1:hold" in shown and "landed" in shown
    assert summary.completed and summary.dry_run and summary.collisions == 0
    # streamed throughout (the rate itself is a benchmark's business: a loaded machine lowers it)
    assert summary.stream_hz["extpos"] > 0.25 * 50.0, "extpos streamed at the mocap rate"
    assert Path(summary.plot).is_file() and json.loads((tmp_path / "flight" / "summary.json").read_text())["completed"]


def test_the_shipped_student_flies_the_goal_swap_onboard_reaching_every_goal_without_a_collision(tmp_path,
                                                                                                 toc_cache):
    """The issue's must-show: 8 drones through real cflib, the generated C policy flying onboard each of them
    (the distilled swarm8 student, as `make demo` flies it), the example goal-swap mission from take-off to
    landing: every goal reached and no drone-drone contact."""
    from nanoswarm.export.codegen import generate_c
    from nanoswarm.training.checkpoint import file_digest, load_policy, resolve_checkpoint

    student, _ = load_policy("swarm8_student")
    model = export_onnx(student, tmp_path / "export" / "policy.onnx",
                        source_sha256=file_digest(resolve_checkpoint("swarm8_student")),
                        action_meta=action_metadata(load_params("crazyflie21_sysid")))
    generate_c(model, tmp_path / "export" / "c")
    # The example mission as it is, but for link loss judged as in every flight test here.
    mission = yaml.safe_load((MISSIONS / "goal_swap.yaml").read_text())
    mission.setdefault("safety", {})["telemetry_timeout_s"] = TEST_TELEMETRY_TIMEOUT_S
    (tmp_path / "goal_swap.yaml").write_text(yaml.safe_dump(mission))
    summary = run_fly("virtual8", tmp_path / "goal_swap.yaml",
                      tmp_path / "flight", dry_run=True, mode="onboard", policy_dir=tmp_path / "export",
                      toc_cache=toc_cache, virtual_base_port=free_base_port(8))
    assert summary.completed and summary.aborted is None, events_of(summary)
    assert summary.goals_reached == summary.goals_asked == 16
    assert summary.collisions == 0 and summary.link_losses == 0
