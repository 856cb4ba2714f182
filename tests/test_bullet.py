"""The pybullet backend: an independent check of the torch simulator's physics (issue 6).

Open-loop cross-checks fly the same motor commands from the same states in both simulators for 1 s and
compare position, attitude, velocity and body rates after every control step; the environment tests check
that pybullet's collision shapes and contacts stand in for ours behind the same interface.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pybullet
import pytest
import torch

from nanoswarm.cli import main
from nanoswarm.sim.bullet.crosscheck import CrossCheck, Tolerances, run_crosscheck, start_state
from nanoswarm.sim.bullet.env import BulletSwarmEnv
from nanoswarm.sim.bullet.urdf import LOAD_FLAGS, crazyflie_urdf, write_urdf
from nanoswarm.sim.config import EnvConfig, NoiseConfig
from nanoswarm.sim.dynamics import action_for_thrust, hover_thrust, physics_step, quat_from_rotvec
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.params import load_params, nominal_drone_params
from nanoswarm.training.kickstart import ControllerExpert

PARAMS = load_params("crazyflie21_sysid")
STEPS = 100                     # 1 s at the 100 Hz control rate
# Flights about one body axis at a time: both simulators integrate the same equations with schemes that
# agree exactly there (no gyroscopic coupling), so only float32 rounding separates them; measured at most
# 7e-5 m, 1e-5 rad, 8e-6 m/s and 2e-5 rad/s over 1 s. A millimetre, a milliradian and their rates catch
# any modelling difference (a wrong sign, arm, lag or frame) long before a policy would feel it.
SAME_MODEL = Tolerances(position=1e-3, attitude=1e-3, velocity=1e-3, rates=1e-3)
# Tumbling about all axes at once, the gyroscopic term is integrated differently (torch: implicit midpoint,
# second order; pybullet: first order), an O(dt) difference that chaotic bang-bang flight amplifies (measured
# 4.6e-3 m, 9.7e-3 rad, 1.5e-2 m/s, 6.7e-2 rad/s after 1 s). The bounds are small against what the manoeuvre
# does in that second: 1 cm, about a degree, 3 cm/s and 0.1 rad/s (under 1 % of the 13 rad/s it reaches).
TUMBLE = Tolerances(position=1e-2, attitude=2e-2, velocity=3e-2, rates=1e-1)
ROLL = torch.tensor([-1.0, -1.0, 1.0, 1.0])    # left motors (M3, M4) up, right down: positive roll
PITCH = torch.tensor([1.0, -1.0, -1.0, 1.0])   # front up: pitch nose up (negative about body y)
YAW = torch.tensor([-1.0, 1.0, -1.0, 1.0])     # M2, M4 up: positive yaw reaction torque


def hover_action(drones: int) -> torch.Tensor:
    params = nominal_drone_params(PARAMS, drones, 0.005)
    return action_for_thrust(hover_thrust(params), params)


def fly(actions: torch.Tensor, tolerances: Tolerances, omega: torch.Tensor | None = None, **kwargs) -> CrossCheck:
    """Cross-check actions (T, M, 4) from rest (or the given body rates), drones 2 m apart and 100 m up."""
    m = actions.shape[1]
    pos = torch.stack([torch.tensor([2.0 * i, 0.0, 100.0]) for i in range(m)])
    quat = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(m, 4).clone()
    rest = torch.zeros(m, 3)
    return run_crosscheck(actions, pos, quat, rest, rest if omega is None else omega, PARAMS, tolerances, **kwargs)


# ------------------------------------------------------------------------------------------- URDF
def test_urdf_carries_the_parameter_set_into_pybullet():
    link = ET.fromstring(crazyflie_urdf(PARAMS)).find("link")
    assert float(link.find("inertial/mass").get("value")) == PARAMS.mass
    assert float(link.find("collision/geometry/sphere").get("radius")) == PARAMS.collision_radius
    client = pybullet.connect(pybullet.DIRECT)
    try:
        with tempfile.TemporaryDirectory() as folder:
            body = pybullet.loadURDF(str(write_urdf(PARAMS, Path(folder))), flags=LOAD_FLAGS, physicsClientId=client)
        info = pybullet.getDynamicsInfo(body, -1, physicsClientId=client)
    finally:
        pybullet.disconnect(client)
    assert info[0] == pytest.approx(PARAMS.mass)
    assert info[2] == pytest.approx(PARAMS.inertia, rel=1e-6)  # from the file, not from the sphere


# -------------------------------------------------------------------------------------- cross-checks
def test_hover_holds_in_both_simulators():
    check = fly(hover_action(2).expand(STEPS, 2, 4), SAME_MODEL)
    assert check.first_divergence is None, check.summary()
    assert check.peak_rate < 1e-3


def test_step_inputs_agree_over_one_second():
    """A collective step up and down, and roll, pitch and yaw differential steps, one per drone."""
    hover = hover_action(5).expand(STEPS, 5, 4).clone()
    hover[10:, 0] += 0.2
    hover[10:, 1] -= 0.3
    hover[10:30, 2] += 0.05 * ROLL
    hover[10:30, 3] += 0.05 * PITCH
    hover[10:60, 4] += 0.2 * YAW
    check = fly(hover, SAME_MODEL)
    assert check.first_divergence is None, check.summary()


def test_aggressive_flips_and_spins_agree_over_one_second():
    """Full differential thrust: a roll flip, a pitch flip and a yaw spin-up, up to about 34 rad/s."""
    actions = hover_action(3).expand(STEPS, 3, 4).clone()
    actions[0:6, 0], actions[30:39, 0] = ROLL, -ROLL
    actions[0:6, 1], actions[6:14, 1] = 0.5 - PITCH, PITCH
    actions[:50, 2] = YAW
    check = fly(actions, SAME_MODEL)
    assert check.first_divergence is None, check.summary()
    assert check.peak_rate > 25.0            # it was aggressive: more than 4 turns per second


def test_multi_axis_tumble_differs_only_by_integration_error():
    """Random full-throttle motor commands tumble the drone about all axes; the simulators stay within
    `TUMBLE`, and halving the physics step halves their difference: it is discretisation, not physics."""
    generator = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 2, (STEPS, 1, 4), generator=generator).float() * 2.0 - 1.0
    coarse = fly(actions, TUMBLE)
    assert coarse.first_divergence is None, coarse.summary()
    fine = fly(actions, TUMBLE, physics_hz=400.0)
    for quantity in ("attitude", "rates"):
        assert fine.max_errors[quantity] < 0.6 * coarse.max_errors[quantity], (quantity, fine.summary())


def test_the_spin_difference_is_pybullets_first_order_rotation_integration():
    """A torque-free spin at 5.4 rad/s about all three axes: torch at 200 Hz stays within 1e-3 rad/s of torch
    at 2 kHz (its implicit midpoint rule is second order), while pybullet at 200 Hz (explicit, first order)
    is 0.1 rad/s and 1.4 degrees off after 1 s. Where the two disagree on tumbling flight, pybullet is off."""
    spin = torch.tensor([[3.0, -2.0, 4.0]])
    coast = torch.full((STEPS, 1, 4), -1.0)          # motors off: no torque, a falling, spinning body
    check = fly(coast, TUMBLE, omega=spin)

    def torch_rates(physics_hz: float) -> torch.Tensor:
        dt = 1.0 / physics_hz
        params = nominal_drone_params(PARAMS, 1, dt)
        state = start_state(torch.tensor([[0.0, 0.0, 100.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                            torch.zeros(1, 3), spin, params)
        for _ in range(round(physics_hz * STEPS / 100.0)):
            state = physics_step(state, torch.zeros(1, 4), params, dt)
        return state.omega

    torch_error = float(torch.linalg.vector_norm(torch_rates(200.0) - torch_rates(2_000.0)))
    assert torch_error < 1e-3
    assert check.max_errors["rates"] > 50 * torch_error


def test_a_wrong_mass_diverges_in_velocity_first():
    check = fly(hover_action(1).expand(STEPS, 1, 4), SAME_MODEL,
                bullet_params=dataclasses.replace(PARAMS, mass=1.2 * PARAMS.mass))
    first = check.first_divergence
    assert first is not None and first.quantity == "velocity" and first.time_s < 0.1, check.summary()
    assert "DIVERGE: velocity first" in check.summary()


def test_a_wrong_inertia_diverges_in_rates_first():
    actions = hover_action(1).expand(STEPS, 1, 4).clone()
    actions[10:30, 0] += 0.05 * ROLL
    check = fly(actions, SAME_MODEL, bullet_params=dataclasses.replace(
        PARAMS, inertia=tuple(1.5 * i for i in PARAMS.inertia)))
    first = check.first_divergence
    assert first is not None and first.quantity == "rates", check.summary()


# --------------------------------------------------------------------------------------- environment
def quiet_config(**changes) -> EnvConfig:
    return EnvConfig(num_envs=2, drones_per_swarm=3, num_neighbors=2, noise=NoiseConfig.off(), downwash=False,
                     seed=5, **changes)


def test_same_layout_and_same_episodes_as_the_torch_env():
    config = quiet_config(scenario="obstacles", obstacle_density=0.2)
    ours, theirs = SwarmEnv(config), BulletSwarmEnv(config)
    assert theirs.layout == ours.layout and theirs.obs_size == ours.obs_size
    obs_ours, obs_theirs = ours.reset(), theirs.reset()
    assert torch.equal(obs_ours, obs_theirs)
    assert torch.equal(ours.state.occupancy, theirs.state.occupancy)
    action = hover_action(3).expand(2, 3, 4)
    for _ in range(20):
        step_ours, step_theirs = ours.step(action), theirs.step(action)
    # Hovering in free space the physics agree, so the observations do too.
    assert (step_ours.observation - step_theirs.observation).abs().max() < 1e-4


def test_randomised_airframes_reach_pybullet():
    env = BulletSwarmEnv(quiet_config(scenario="hover", randomize=True))
    env.reset()
    env.step(hover_action(3).expand(2, 3, 4))
    params = env.state.params
    for e, world in enumerate(env.worlds):
        for i, body in enumerate(world.drones):
            info = pybullet.getDynamicsInfo(body, -1, physicsClientId=world.client)
            assert info[0] == pytest.approx(float(params.mass[e, i]))
            assert info[2] == pytest.approx(params.inertia[e, i].tolist(), rel=1e-6)
    assert len({round(float(m), 6) for m in params.mass.flatten()}) == 6   # every drone its own airframe


def place(env: SwarmEnv, pos: list[list[float]], vel: list[list[float]]) -> None:
    """Put environment 0's drones at pos with vel, past the grace period (the world follows the tensors)."""
    s = env.state
    s.drones.pos[0] = torch.tensor(pos)
    s.drones.vel[0] = torch.tensor(vel)
    s.steps[0] = round(env.config.grace_s * env.config.control_hz) + 1


def test_a_column_is_a_collision_shape_that_stops_a_drone():
    env = BulletSwarmEnv(quiet_config(scenario="obstacles", obstacle_density=0.2))
    env.reset()
    env.state.occupancy[0] = False
    env.state.occupancy[0, 4, 4] = True                     # one column, centred at (0.5, 0.5)
    place(env, [[-0.3, 0.5, 1.5], [-3.5, -3.5, 1.5], [-3.5, 3.5, 1.5]], [[1.5, 0.0, 0.0], [0.0] * 3, [0.0] * 3])
    stop = 0.5 - 0.5 * env.config.obstacle_diameter - PARAMS.collision_radius   # centre x at contact
    furthest = -math.inf
    for _ in range(50):
        env.step(hover_action(3).expand(2, 3, 4))
        furthest = max(furthest, float(env.state.drones.pos[0, 0, 0]))
    assert stop - 0.01 < furthest < stop + 0.005              # reached the column and did not pass into it
    assert env.state.drones.vel[0, 0, 0] < 0.0                 # bounced back
    assert env.state.stats.obstacle_collisions[0].tolist() == [1, 0, 0]


def test_drone_contacts_are_detected_by_pybullet():
    env = BulletSwarmEnv(quiet_config(scenario="hover"))
    env.reset()
    place(env, [[-0.3, 0.0, 1.5], [0.3, 0.0, 1.5], [3.0, 3.0, 1.5]], [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0] * 3])
    closest = math.inf
    for _ in range(40):
        env.step(hover_action(3).expand(2, 3, 4))
        pos = env.state.drones.pos[0]
        closest = min(closest, float(torch.linalg.vector_norm(pos[0] - pos[1])))
    contact = 2.0 * PARAMS.collision_radius
    assert contact - 0.01 < closest < contact + 0.002         # the spheres met and did not pass through
    assert env.state.drones.vel[0, 0, 0] < 0.0 < env.state.drones.vel[0, 1, 0]   # they bounced apart
    assert env.state.stats.drone_collisions[0].tolist() == [1, 1, 0]


def test_a_glancing_contact_spins_drones_through_friction_alone():
    """The physics that cost the swarm policies trained without it most on pybullet: a glancing drone-drone
    contact spins both drones (friction at the rim), in both engines; without friction, in neither."""
    def peak_rate(env: SwarmEnv) -> float:
        env.reset()
        place(env, [[-0.3, 0.05, 1.5], [0.3, -0.05, 1.5], [3.0, 3.0, 1.5]],
              [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0] * 3])
        peak = 0.0
        for _ in range(40):
            env.step(hover_action(3).expand(2, 3, 4))
            peak = max(peak, float(env.state.drones.omega[0, :2].abs().max()))
        assert env.state.stats.drone_collisions[0, :2].tolist() == [1, 1]
        return peak

    assert peak_rate(BulletSwarmEnv(quiet_config(scenario="hover"))) > 5.0
    assert peak_rate(BulletSwarmEnv(quiet_config(scenario="hover", contact_friction=0.0))) < 0.1
    assert peak_rate(SwarmEnv(quiet_config(scenario="hover"))) > 5.0
    assert peak_rate(SwarmEnv(quiet_config(scenario="hover", contact_friction=0.0))) < 0.1


# Measured (friction 0.5 in both, restitution 0.5, drones at 1 m/s each, 2026-11-22): body rates just after
# the contact, torch / pybullet, and the largest velocity difference over the two drones 10 ms after it
#   offset across (y) 0.1 m:  yaw   -11.90 / -11.37 rad/s,  0.12 m/s  (frictionless torch: 0 rad/s, 0.20 m/s)
#   offset across (y) 0.04 m: yaw    -5.15 /  -4.74 rad/s,  0.10 m/s  (frictionless torch: 0 rad/s, 0.12 m/s)
#   offset above  (z) 0.1 m:  pitch +12.61 / +12.05 rad/s,  0.13 m/s  (frictionless torch: 0 rad/s, 0.17 m/s)
#   offset above  (z) 0.04 m: pitch  +5.46 /  +5.03 rad/s,  0.10 m/s  (frictionless torch: 0 rad/s, 0.11 m/s)
# The spin agrees within 9 % (the contact sticks in both: |u_t| / K, nearly independent of mu), the torch
# simulator's a little larger: it resolves the contact once per 10 ms control step, after the spheres overlap
# by up to 2 cm, so its normal is more head-on than pybullet's. The velocities differ by about 0.1 m/s of the
# 2 m/s closing speed, mostly along the normal: pybullet returns less of the approach speed (0.23 of it
# against a column at restitution 0.5, see sim/bullet/env.py). Tolerances: 15 % on the rates, 0.15 m/s.
GLANCE_RATE_TOLERANCE = 0.15
GLANCE_VELOCITY_TOLERANCE = 0.15   # m/s


@pytest.mark.parametrize("axis, offset", [(1, 0.05), (1, 0.02), (2, 0.05), (2, 0.02)])
def test_a_glancing_contact_spins_the_drones_alike_in_both_engines(axis, offset):
    """Two drones flying past each other at 1 m/s each, their paths 2 x offset apart across (axis 1) or
    above one another (axis 2), less than the contact distance: the torch simulator's friction impulse
    spins them about the same axis, with the same sign and nearly the same rate as pybullet's contact
    solver, and sends them off with nearly the same velocities."""
    def glance(env: SwarmEnv) -> tuple[torch.Tensor, torch.Tensor]:
        env.reset()
        first, second = [-0.3, 0.0, 1.5], [0.3, 0.0, 1.5]
        first[axis], second[axis] = first[axis] + offset, second[axis] - offset
        place(env, [first, second, [3.0, 3.0, 1.5]], [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0] * 3])
        for _ in range(40):
            env.step(hover_action(3).expand(2, 3, 4))
            if int(env.state.stats.drone_collisions[0, 0]):
                break
        assert env.state.stats.drone_collisions[0].tolist() == [1, 1, 0]
        return env.state.drones.omega[0, :2].clone(), env.state.drones.vel[0, :2].clone()

    rates_bullet, vel_bullet = glance(BulletSwarmEnv(quiet_config(scenario="hover")))
    rates_torch, vel_torch = glance(SwarmEnv(quiet_config(scenario="hover")))
    _, vel_frictionless = glance(SwarmEnv(quiet_config(scenario="hover", contact_friction=0.0)))
    spin_axis = 2 if axis == 1 else 1                                 # yaw across, pitch above
    spin = rates_bullet[:, spin_axis]
    assert bool((spin.abs() > 4.0).all())                             # a real spin: 4.7 to 12 rad/s
    assert torch.equal(torch.sign(rates_torch[:, spin_axis]), torch.sign(spin))
    assert torch.allclose(rates_torch, rates_bullet, rtol=0.0, atol=GLANCE_RATE_TOLERANCE * float(spin.abs().min()))
    error = float(torch.linalg.vector_norm(vel_torch - vel_bullet, dim=-1).max())
    assert error < GLANCE_VELOCITY_TOLERANCE
    assert error < float(torch.linalg.vector_norm(vel_frictionless - vel_bullet, dim=-1).max())


# Measured as above, a drone at 1.5 m/s passing a 0.6 m column with its path 0.15 m / 0.3 m off the column's
# centre: yaw -8.83 / -8.66 rad/s and -17.32 / -17.12 rad/s (torch / pybullet); velocity differences 0.06 and
# 0.33 m/s (frictionless torch: 0.12 and 0.37 m/s). The nearly tangential pass differs more in velocity: the
# torch simulator meets the column up to 1.5 cm deep at its control step, which tilts the normal.
@pytest.mark.parametrize("offset", [0.15, 0.3])
def test_a_glancing_column_contact_spins_the_drone_alike_in_both_engines(offset):
    def glance(env: SwarmEnv) -> tuple[torch.Tensor, torch.Tensor]:
        env.reset()
        env.state.occupancy[0] = False
        env.state.occupancy[0, 4, 4] = True                     # one column, centred at (0.5, 0.5)
        place(env, [[-0.3, 0.5 + offset, 1.5], [-3.5, -3.5, 1.5], [-3.5, 3.5, 1.5]],
              [[1.5, 0.0, 0.0], [0.0] * 3, [0.0] * 3])
        for _ in range(50):
            env.step(hover_action(3).expand(2, 3, 4))
            if int(env.state.stats.obstacle_collisions[0, 0]):
                break
        assert env.state.stats.obstacle_collisions[0].tolist() == [1, 0, 0]
        return env.state.drones.omega[0, 0].clone(), env.state.drones.vel[0, 0].clone()

    config = quiet_config(scenario="obstacles", obstacle_density=0.2)
    rates_bullet, vel_bullet = glance(BulletSwarmEnv(config))
    rates_torch, vel_torch = glance(SwarmEnv(config))
    _, vel_frictionless = glance(SwarmEnv(dataclasses.replace(config, contact_friction=0.0)))
    yaw = float(rates_bullet[2])
    assert yaw < -5.0 and float(rates_torch[2]) < 0.0
    assert torch.allclose(rates_torch, rates_bullet, rtol=0.0, atol=GLANCE_RATE_TOLERANCE * abs(yaw))
    error = float(torch.linalg.vector_norm(vel_torch - vel_bullet))
    assert error < float(torch.linalg.vector_norm(vel_frictionless - vel_bullet))


# A drone at rest on the floor, tilted about the (1, 1, 0) diagonal, flown by the geometric controller to 1 m
# above: the control step at which it is 0.3 m up (None: not within 3 s).
# Measured 2026-11-22 with the controller of that day (torque kept when motors saturate, attitude gain 230),
# torch / pybullet, within 6 s: 20 deg: 45 / 47; 30: 50 / None; 45: 91 / None; 60: 153 / None; 90: 256 / None;
# 135: 460 / None. With the earlier, softer controller: 20 deg: 54 / 58; 45: None / None; 60: None / 195;
# 90: None / 287. The stiffer controller's torques pivot a tilted drone upright on the torch simulator's
# floor but not on pybullet's: a known gap of the torch floor contact (left open; it did not show in the
# policies' sim-to-sim scores, see BENCHMARKS.md). The cases below are those where the engines agree.
@pytest.mark.parametrize("tilt_deg, lift_off", [(20, True), (135, False)])
def test_a_tilted_drone_gets_off_the_floor_alike_in_both_engines(tilt_deg, lift_off):
    def lift_off_step(env: SwarmEnv, rest_height: float) -> int | None:
        env.reset()
        s = env.state
        s.drones.pos[0] = torch.tensor([[0.0, 0.0, rest_height], [3.0, 3.0, 1.5], [-3.0, 3.0, 1.5]])
        s.drones.vel[0] = 0.0
        s.drones.omega[0] = 0.0
        axis = torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2.0)
        s.drones.quat[0, 0] = quat_from_rotvec(axis * math.radians(tilt_deg))
        s.goals[0] = s.drones.pos[0].clone()
        s.goals[0, 0, 2] = 1.0
        s.steps[0] = round(env.config.grace_s * env.config.control_hz) + 1
        expert = ControllerExpert(env.layout, env.config)
        obs = env.step(torch.zeros(2, 3, 4)).observation
        for step in range(300):
            obs = env.step(expert.deterministic_action(obs)).observation
            if float(env.state.drones.pos[0, 0, 2]) > rest_height + 0.3:
                return step
        return None

    config = quiet_config(scenario="hover")
    ours = lift_off_step(SwarmEnv(config), 0.0)
    theirs = lift_off_step(BulletSwarmEnv(config), PARAMS.collision_radius)   # pybullet rests on the sphere
    assert (ours is not None) == (theirs is not None) == lift_off, (ours, theirs)
    if lift_off:
        assert abs(ours - theirs) <= 50, (ours, theirs)                       # within 0.5 s


# ------------------------------------------------------------------------------------------------ CLI
def test_eval_runs_any_policy_on_pybullet(tmp_path):
    out = tmp_path / "single.json"
    assert main(["eval", "single", "--backend", "pybullet", "--randomize", "--episodes", "2", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["backend"] == "pybullet" and metrics["randomize"] is True and metrics["episodes"] == 2
    assert 0.0 <= metrics["success_rate"] <= 1.0


def test_eval_on_pybullet_refuses_a_gpu_with_the_fix(capsys):
    assert main(["eval", "single", "--backend", "pybullet", "--device", "cuda", "--episodes", "1"]) == 2
    assert "drop --device cuda" in capsys.readouterr().out


def test_eval_friction_sets_either_backends_contacts_and_is_checked(capsys, tmp_path):
    from nanoswarm.cli import main

    assert main(["eval", "single", "--friction", "2.5", "--episodes", "1"]) == 2
    assert "contact_friction" in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "eval.json"
    assert main(["eval", "single", "--scenario", "hover", "--friction", "0", "--episodes", "1", "--json", str(out),
                 "--plot", str(tmp_path / "eval.png")]) == 0
    assert json.loads(out.read_text())["episodes"] == 1
