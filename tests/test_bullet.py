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
from nanoswarm.sim.dynamics import action_for_thrust, hover_thrust, physics_step
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.params import load_params, nominal_drone_params

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
    """The physics that costs the shipped swarm policies most on pybullet: a glancing drone-drone contact
    spins both drones (friction at the rim), where the torch simulator's frictionless contact cannot."""
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
    assert peak_rate(BulletSwarmEnv(quiet_config(scenario="hover"), friction=0.0)) < 0.1
    assert peak_rate(SwarmEnv(quiet_config(scenario="hover"))) < 0.1


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


def test_friction_is_refused_without_the_pybullet_backend(capsys):
    from nanoswarm.cli import main

    assert main(["eval", "single", "--friction", "0", "--episodes", "1"]) == 2
    assert "add --backend pybullet" in " ".join(capsys.readouterr().out.split())
