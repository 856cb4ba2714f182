"""Specification of the rigid-body and motor dynamics (`nanoswarm.sim.dynamics`).

Physics is checked against closed-form answers: hover, free fall, spin-up under a constant torque,
first-order motor lag, the firmware mixer's signs, and the invariants of torque-free rotation.
"""

from __future__ import annotations

import math

import pytest
import torch

from nanoswarm.sim.config import ThrowConfig
from nanoswarm.sim.dynamics import (MAX_BODY_RATE, MOTOR_X_SIGN, MOTOR_YAW_SIGN, MOTOR_Y_SIGN, DroneState,
                                    action_for_thrust, body_wrench, commanded_thrust, hover_thrust, motor_thrusts_for_wrench,
                                    physics_step, quat_from_rotvec, quat_multiply, rotation_matrix)
from nanoswarm.sim.params import GRAVITY, available_param_sets, load_params, nominal_drone_params

DT = 1.0 / 200.0


def gravity_compensation(n: int) -> torch.Tensor:
    """Extra world acceleration that cancels gravity, so a drone with motors off floats in place."""
    return torch.tensor((0.0, 0.0, GRAVITY)).expand(n, 3).clone()


def rodrigues(rotvec: torch.Tensor) -> torch.Tensor:
    """Reference rotation matrix of a rotation vector, in float64 (Rodrigues' formula)."""
    v = rotvec.double()
    angle = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    axis = v / angle.clamp_min(1e-300)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*v.shape[:-1], 3, 3)
    a = angle.unsqueeze(-1)
    eye = torch.eye(3, dtype=torch.float64).expand_as(k)
    return eye + torch.sin(a) * k + (1.0 - torch.cos(a)) * (k @ k)


def yaw_matrix(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor(((c, -s, 0.0), (s, c, 0.0), (0.0, 0.0, 1.0)))


# ----------------------------------------------------------------------------------------------- hover
@pytest.mark.parametrize("param_set", available_param_sets())
def test_hover_thrust_holds_altitude(param_set, make_state):
    """Motors at hover thrust, commanded hover thrust, noise off: z stays within 1 cm for 5 s."""
    params = nominal_drone_params(load_params(param_set), 2, DT)
    hover = hover_thrust(params)
    state = make_state(2, pos=(0.3, -0.2, 1.0), thrust=hover)
    for _ in range(round(5.0 / DT)):
        state = physics_step(state, hover, params, DT)
        assert abs(float(state.pos[:, 2].max()) - 1.0) < 0.01 and abs(float(state.pos[:, 2].min()) - 1.0) < 0.01
    assert torch.allclose(state.pos[:, :2], torch.tensor([[0.3, -0.2]] * 2), atol=1e-6)
    assert float(state.vel.abs().max()) < 1e-3
    assert float(state.omega.abs().max()) < 1e-6


def test_hover_thrust_is_a_quarter_of_the_weight_per_motor(quad):
    params = nominal_drone_params(quad, 3, DT)
    collective, torque = body_wrench(hover_thrust(params), params)
    assert torch.allclose(collective, torch.full((3,), quad.mass * GRAVITY), rtol=1e-6)
    assert torch.allclose(torque, torch.zeros(3, 3), atol=1e-12)


# ------------------------------------------------------------------------------------------- free fall
def test_free_fall_matches_g(quad, make_state):
    """Motors off from rest: v_z = -g t exactly, and z follows the semi-implicit Euler closed form
    z_n = z0 - g dt^2 n (n + 1) / 2, which tends to z0 - g t^2 / 2."""
    params = nominal_drone_params(quad, 2, DT)
    z0 = 10.0
    state = make_state(2, pos=(1.0, 2.0, z0), thrust=0.0)
    zero = torch.zeros(2, 4)
    for n in range(1, 201):
        state = physics_step(state, zero, params, DT)
        t = n * DT
        assert torch.allclose(state.vel[:, 2], torch.full((2,), -GRAVITY * t), rtol=1e-4, atol=0.0)
        z_discrete = z0 - GRAVITY * DT * DT * n * (n + 1) / 2.0
        assert torch.allclose(state.pos[:, 2], torch.full((2,), z_discrete), rtol=0.0, atol=5e-4)
    t = 1.0
    # The discrete answer is the continuous one up to the first-order integration error g dt t / 2.
    assert abs(float(state.pos[0, 2]) - (z0 - GRAVITY * t * t / 2.0)) < GRAVITY * DT * t / 2.0 + 1e-3
    assert torch.equal(state.pos[:, :2], torch.tensor([[1.0, 2.0]] * 2))
    assert torch.equal(state.vel[:, :2], torch.zeros(2, 2))
    assert torch.equal(state.thrust, zero)


def test_floor_stops_a_falling_drone(quad, make_state):
    """A drone dropped from 0.3 m lands at z = 0 and stays there: no penetration, no downward speed."""
    params = nominal_drone_params(quad, 1, DT)
    state = make_state(1, pos=(0.0, 0.0, 0.3), vel=(0.5, 0.0, 0.0), thrust=0.0)
    for _ in range(200):
        state = physics_step(state, torch.zeros(1, 4), params, DT)
        assert float(state.pos[0, 2]) >= 0.0
    assert float(state.pos[0, 2]) == 0.0
    assert float(state.vel[0, 2]) == 0.0
    assert abs(float(state.vel[0, 0])) < 1e-6      # friction stopped the slide


# ---------------------------------------------------------------------------------------------- mixer
ROTOR_POSITION = {0: (1.0, -1.0), 1: (-1.0, -1.0), 2: (-1.0, 1.0), 3: (1.0, 1.0)}   # M1..M4, units of rotor_xy
YAW_REACTION = {0: -1.0, 1: 1.0, 2: -1.0, 3: 1.0}  # firmware mixer: M1, M3 lower yaw; M2, M4 raise it


@pytest.mark.parametrize("motor", range(4))
def test_each_motor_makes_the_firmware_mixer_torques(quad, motor):
    """One motor at a time: torque = r_i x (0, 0, T) + (0, 0, yaw_sign_i k T), with M1 front-right
    (+x, -y), M2 back-right, M3 back-left, M4 front-left, and yaw signs of the firmware mixer."""
    params = nominal_drone_params(quad, 1, DT)
    thrust = torch.zeros(1, 4)
    thrust[0, motor] = 0.07
    collective, torque = body_wrench(thrust, params)
    s, k = quad.rotor_xy, quad.torque_to_thrust
    rotor = torch.tensor((ROTOR_POSITION[motor][0] * s, ROTOR_POSITION[motor][1] * s, 0.0), dtype=torch.float64)
    expected = torch.linalg.cross(rotor, torch.tensor((0.0, 0.0, 0.07), dtype=torch.float64))
    expected[2] = YAW_REACTION[motor] * k * 0.07
    assert float(collective[0]) == pytest.approx(0.07, rel=1e-6)
    assert torch.allclose(torque[0].double(), expected, rtol=1e-5, atol=1e-12)
    # The module's sign tables say the same.
    assert (MOTOR_X_SIGN[motor], MOTOR_Y_SIGN[motor], MOTOR_YAW_SIGN[motor]) == (
        ROTOR_POSITION[motor][0], ROTOR_POSITION[motor][1], YAW_REACTION[motor])


def test_motor_one_rolls_negative_pitches_negative_and_yaws_negative(quad):
    """M1 at (+s, -s): tau_x = -s T, tau_y = -s T, tau_z = -k T."""
    params = nominal_drone_params(quad, 1, DT)
    _, torque = body_wrench(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), params)
    s, k = quad.rotor_xy, quad.torque_to_thrust
    assert torque[0].tolist() == pytest.approx([-s, -s, -k], rel=1e-6)


def test_inverse_mixer_round_trips_random_wrenches(quad):
    gen = torch.Generator().manual_seed(1)
    params = nominal_drone_params(quad, 64, DT)
    collective = 0.2 + 0.2 * torch.rand(64, generator=gen)
    torque = (torch.rand(64, 3, generator=gen) - 0.5) * torch.tensor((2e-3, 2e-3, 2e-4))
    thrusts = motor_thrusts_for_wrench(collective, torque, params)
    back_collective, back_torque = body_wrench(thrusts, params)
    assert torch.allclose(back_collective, collective, rtol=1e-5)
    assert torch.allclose(back_torque, torque, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("param_set", available_param_sets())
def test_action_for_thrust_inverts_the_thrust_curve(param_set):
    quad = load_params(param_set)
    params = nominal_drone_params(quad, 32, DT)
    c0 = quad.thrust_curve[0]
    gen = torch.Generator().manual_seed(2)
    thrust = quad.thrust_max * (c0 + (1.0 - c0) * torch.rand(32, 4, generator=gen))
    action = action_for_thrust(thrust, params)
    assert float(action.min()) >= -1.0 and float(action.max()) <= 1.0
    assert torch.allclose(commanded_thrust(action, params), thrust, rtol=1e-4, atol=1e-6)
    # The ends of the action range command the ends of the curve.
    ends = commanded_thrust(torch.tensor([[-1.0, -1.0, 1.0, 1.0]]).expand(32, 4), params)
    assert torch.allclose(ends[:, :2], torch.full((32, 2), c0 * quad.thrust_max), atol=1e-7)
    assert torch.allclose(ends[:, 2:], torch.full((32, 2), quad.thrust_max), rtol=1e-6)


# ----------------------------------------------------------------------------------- angular dynamics
@pytest.mark.parametrize("axis", [0, 1, 2], ids=["roll", "pitch", "yaw"])
def test_pure_torque_spins_up_at_torque_over_inertia(quad, make_state, axis):
    """Collective m g and a torque about one body axis, motors settled at the command: the rate about
    that axis grows as tau / I t, the other rates stay zero and the drone holds its altitude."""
    params = nominal_drone_params(quad, 1, DT)
    tau = (2e-6, 2e-6, 5e-5)[axis]
    torque = torch.zeros(1, 3)
    torque[0, axis] = tau
    thrusts = motor_thrusts_for_wrench(torch.tensor([quad.mass * GRAVITY]), torque, params)
    assert float(thrusts.min()) > 0.0
    state = make_state(1, pos=(0.0, 0.0, 2.0), thrust=thrusts)
    steps = 200 if axis == 2 else 20    # a short roll or pitch keeps the tilt (and the sideways push) small
    for _ in range(steps):
        state = physics_step(state, thrusts, params, DT)
    t = steps * DT
    expected = tau / quad.inertia[axis] * t
    assert float(state.omega[0, axis]) == pytest.approx(expected, rel=1e-3)
    others = [i for i in range(3) if i != axis]
    assert float(state.omega[0, others].abs().max()) < 1e-3 * expected
    assert abs(float(state.pos[0, 2]) - 2.0) < 0.01
    assert torch.equal(state.thrust, thrusts)      # settled motors stay settled


def test_yaw_spin_up_turns_the_attitude_by_the_integrated_rate(quad, make_state):
    """After n steps of constant yaw acceleration alpha the heading is alpha dt^2 n (n + 1) / 2 (the
    attitude update uses the new rate), and the drone stays level."""
    params = nominal_drone_params(quad, 1, DT)
    tau = 5e-5
    thrusts = motor_thrusts_for_wrench(torch.tensor([quad.mass * GRAVITY]), torch.tensor([[0.0, 0.0, tau]]),
                                       params)
    state = make_state(1, pos=(0.0, 0.0, 2.0), thrust=thrusts)
    n = 200
    for _ in range(n):
        state = physics_step(state, thrusts, params, DT)
    alpha = tau / quad.inertia[2]
    heading = alpha * DT * DT * n * (n + 1) / 2.0
    assert torch.allclose(rotation_matrix(state.quat)[0], yaw_matrix(heading), atol=1e-4)


def test_positive_yaw_rate_turns_the_nose_left(make_state, quad):
    """Body z is up: a positive yaw rate rotates the body x axis towards world +y."""
    params = nominal_drone_params(quad, 1, DT)
    state = make_state(1, pos=(0.0, 0.0, 2.0), omega=(0.0, 0.0, 1.0))
    state = physics_step(state, torch.zeros(1, 4), params, DT, extra_accel=gravity_compensation(1))
    nose = rotation_matrix(state.quat)[0, :, 0]
    assert float(nose[1]) > 0.0 and float(nose[0]) > 0.99


def test_quaternion_exponential_matches_rodrigues():
    gen = torch.Generator().manual_seed(3)
    rotvec = (torch.rand(256, 3, generator=gen) - 0.5) * 2 * torch.tensor(6.0)
    rotvec[:8] *= 1e-6                                            # the small-angle branch
    quat = quat_from_rotvec(rotvec)
    assert torch.allclose(torch.linalg.vector_norm(quat, dim=-1), torch.ones(256), atol=1e-6)
    assert torch.allclose(rotation_matrix(quat).double(), rodrigues(rotvec), atol=1e-5)


def test_quaternion_product_composes_rotations():
    gen = torch.Generator().manual_seed(4)
    a, b = (torch.rand(2, 64, 3, generator=gen) - 0.5) * 4.0
    product = rotation_matrix(quat_multiply(quat_from_rotvec(a), quat_from_rotvec(b)))
    assert torch.allclose(product, rotation_matrix(quat_from_rotvec(a)) @ rotation_matrix(quat_from_rotvec(b)),
                          atol=1e-5)


def test_rotation_stays_orthonormal_over_1e5_steps(quad, make_state):
    """1e5 physics steps of tumbling drones (unequal inertia, so the gyroscopic term acts; gravity
    cancelled so that the floor never touches them): R R^T = I to 1e-5 and det R = 1.

    1e5 eager steps cost about 45 s on 2 CPU cores, so the loop runs `physics_step` compiled; the first
    hundred steps are checked against the eager function, so the loop is the same physics.
    """
    n = 4
    params = nominal_drone_params(quad, n, DT)
    params.inertia = torch.tensor(((1.0e-5, 2.0e-5, 3.0e-5),) * 2 + ((9.42e-6, 9.64e-6, 1.75e-5),) * 2)
    omega = torch.tensor(((0.6, -0.5, 0.4), (0.0, 0.0, 25.0), (-0.4, 0.7, 0.2), (12.0, 0.0, 0.0)))
    start = make_state(n, pos=(0.0, 0.0, 5.0), omega=omega)
    up = gravity_compensation(n)
    cmd = torch.zeros(n, 4)
    step = torch.compile(physics_step, dynamic=False)
    with torch.no_grad():
        eager, compiled = start, start
        for _ in range(100):
            eager = physics_step(eager, cmd, params, DT, None, up)
            compiled = step(compiled, cmd, params, DT, None, up)
        assert torch.allclose(compiled.quat, eager.quat, atol=1e-5)
        assert torch.allclose(compiled.omega, eager.omega, rtol=1e-4, atol=1e-5)
        state = compiled
        for _ in range(100_000 - 100):
            state = step(state, cmd, params, DT, None, up)
    assert bool(torch.isfinite(state.omega).all()), state.omega
    rot = rotation_matrix(state.quat).double()
    error = (rot @ rot.transpose(-1, -2) - torch.eye(3, dtype=torch.float64)).abs().max()
    assert float(error) < 1e-5
    assert torch.allclose(torch.linalg.det(rot), torch.ones(n, dtype=torch.float64), atol=1e-5)
    # The drones really tumbled: their attitude moved away from level.
    assert float((rot[:, 2, 2] - 1.0).abs().max()) > 0.1


def test_sustained_yaw_torque_saturates_at_the_rate_bound_without_diverging(make_state):
    """Full differential thrust for 10 s spins a drag-free drone up without limit in theory; the rates
    stop at MAX_BODY_RATE and stay finite (before the bound, the rate iteration blew up to 1e7 rad/s)."""
    quad = load_params("crazyflie21_sysid")
    params = nominal_drone_params(quad, 2, DT)
    yaw = torch.tensor(MOTOR_YAW_SIGN)
    thrusts = torch.where(yaw > 0, quad.thrust_max, 0.0).expand(2, 4).clone()
    state = make_state(2, pos=(0.0, 0.0, 5.0), omega=torch.tensor([[3.0, -2.0, 0.0], [0.0, 0.0, 0.0]]))
    up = gravity_compensation(2)
    for _ in range(2000):
        state = physics_step(state, thrusts, params, DT, extra_accel=up)
    assert bool(torch.isfinite(state.omega).all()) and bool(torch.isfinite(state.quat).all())
    assert float(state.omega.abs().max()) <= MAX_BODY_RATE
    assert float(state.omega[:, 2].abs().min()) == pytest.approx(MAX_BODY_RATE)


@pytest.mark.parametrize("case", ["throw", "spin_kick"])
def test_torque_free_tumble_conserves_energy_and_angular_momentum(quad, make_state, case):
    """Motors off and gravity cancelled, a tumbling drone feels no torque: its rotational energy
    omega^T I omega / 2 and the size of its angular momentum |R I omega| are constant.

    'throw': rates drawn as `ThrowConfig` draws them, over 2 s. 'spin_kick': a propeller-strike kick
    as large as the rate bound allows (20 to 40 rad/s about a random axis), over 1 s.
    """
    n = 64
    gen = torch.Generator().manual_seed(5)
    if case == "throw":
        omega = ThrowConfig().rates * torch.randn(n, 3, generator=gen)
        steps = 400
    else:
        axis = torch.randn(n, 3, generator=gen)
        axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
        omega = axis * (20.0 + 20.0 * torch.rand(n, 1, generator=gen))
        steps = 200
    params = nominal_drone_params(quad, n, DT)
    inertia = params.inertia
    state = make_state(n, pos=(0.0, 0.0, 5.0), omega=omega)
    up = gravity_compensation(n)

    def invariants(s: DroneState) -> tuple[torch.Tensor, torch.Tensor]:
        w = s.omega.double()
        energy = 0.5 * (inertia.double() * w * w).sum(-1)
        momentum = (rotation_matrix(s.quat).double() @ (inertia.double() * w).unsqueeze(-1)).squeeze(-1)
        return energy, torch.linalg.vector_norm(momentum, dim=-1)

    energy0, momentum0 = invariants(state)
    for _ in range(steps):
        state = physics_step(state, torch.zeros(n, 4), params, DT, extra_accel=up)
    energy, momentum = invariants(state)
    diverged = int((~torch.isfinite(state.omega).all(-1)).sum())
    assert diverged == 0, f"the rates of {diverged} of {n} drones diverged to inf or NaN"
    energy_drift = float((energy / energy0 - 1.0).abs().max())
    momentum_drift = float((momentum / momentum0 - 1.0).abs().max())
    assert energy_drift < 0.02, f"rotational energy changed by up to {energy_drift:.3g} (relative)"
    assert momentum_drift < 0.02, f"|angular momentum| changed by up to {momentum_drift:.3g} (relative)"


# ------------------------------------------------------------------------------------------ motor lag
def test_motor_step_up_follows_tau_up(quad, make_state):
    """A step from 0 to T: thrust(t) = T (1 - exp(-t / tau_up)), exact at every multiple of dt, so after
    tau_up it is T (1 - 1/e)."""
    params = nominal_drone_params(quad, 1, DT)
    dt = quad.motor_tau_up / 100.0
    target = 0.1
    state = make_state(1, pos=(0.0, 0.0, 50.0), thrust=0.0)
    cmd = torch.full((1, 4), target)
    for n in range(1, 101):
        state = physics_step(state, cmd, params, dt)
        expected = target * (1.0 - math.exp(-n * dt / quad.motor_tau_up))
        assert torch.allclose(state.thrust, torch.full((1, 4), expected), rtol=1e-4, atol=0.0)
    assert torch.allclose(state.thrust, torch.full((1, 4), target * (1.0 - math.exp(-1.0))), rtol=1e-4)


def test_motor_step_down_follows_tau_down(quad, make_state):
    """A step from T to 0: thrust(t) = T exp(-t / tau_down); after tau_down it is T / e."""
    params = nominal_drone_params(quad, 1, DT)
    dt = quad.motor_tau_down / 100.0
    start = 0.1
    state = make_state(1, pos=(0.0, 0.0, 50.0), thrust=start)
    cmd = torch.zeros(1, 4)
    for n in range(1, 101):
        state = physics_step(state, cmd, params, dt)
        expected = start * math.exp(-n * dt / quad.motor_tau_down)
        assert torch.allclose(state.thrust, torch.full((1, 4), expected), rtol=1e-4, atol=0.0)
    assert torch.allclose(state.thrust, torch.full((1, 4), start * math.exp(-1.0)), rtol=1e-4)


def test_motors_rise_and_fall_independently_per_motor(quad, make_state):
    """Two motors rising and two falling in the same step each use their own time constant."""
    params = nominal_drone_params(quad, 1, DT)
    state = make_state(1, pos=(0.0, 0.0, 50.0), thrust=torch.tensor([[0.0, 0.1, 0.0, 0.1]]))
    cmd = torch.tensor([[0.1, 0.0, 0.1, 0.0]])
    state = physics_step(state, cmd, params, DT)
    up = 0.1 * (1.0 - math.exp(-DT / quad.motor_tau_up))
    down = 0.1 * math.exp(-DT / quad.motor_tau_down)
    assert state.thrust[0].tolist() == pytest.approx([up, down, up, down], rel=1e-5)


# ------------------------------------------------------------------------------------ noise and drag
def test_motor_noise_is_an_ou_process_with_the_parameter_sets_sigma_and_theta(quad, make_state):
    """Relative thrust noise: stationary standard deviation sigma and lag-one correlation exp(-theta dt)."""
    n = 4096
    params = nominal_drone_params(quad, n, DT)
    hover = hover_thrust(params)
    state = make_state(n, pos=(0.0, 0.0, 50.0), thrust=hover)
    gen = torch.Generator().manual_seed(6)
    # Start in the stationary distribution; a few steps must keep it there.
    state.motor_noise = quad.motor_noise_sigma * torch.randn(n, 4, generator=gen)
    for _ in range(20):
        state = physics_step(state, hover, params, DT, noise=torch.randn(n, 4, generator=gen))
    before = state.motor_noise.clone()
    state = physics_step(state, hover, params, DT, noise=torch.randn(n, 4, generator=gen))
    after = state.motor_noise
    assert float(after.std()) == pytest.approx(quad.motor_noise_sigma, rel=0.03)
    correlation = float((before * after).mean() / (before.std() * after.std()))
    assert correlation == pytest.approx(math.exp(-quad.motor_noise_theta * DT), abs=0.01)
    # The noise multiplies the lagged thrust; without draws the motors are exact.
    quiet = physics_step(state, hover, params, DT)
    assert torch.equal(quiet.motor_noise, state.motor_noise)


def test_body_drag_acts_along_the_body_axes(quad, make_state):
    """Linear body-frame drag D: the world deceleration is R D R^T v / m. A drone yawed by 90 degrees
    flying along world x moves along its body -y axis, so it feels the y coefficient."""
    params = nominal_drone_params(quad, 1, DT)
    params.drag = torch.tensor([[0.01, 0.03, 0.05]])
    hover = hover_thrust(params)
    state = make_state(1, pos=(0.0, 0.0, 2.0), vel=(1.0, 0.0, 0.0), thrust=hover)
    state.quat = quat_from_rotvec(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    out = physics_step(state, hover, params, DT, drag=True)
    assert float(out.vel[0, 0]) == pytest.approx(1.0 - DT * 0.03 / quad.mass, rel=1e-5)
    assert abs(float(out.vel[0, 1])) < 1e-6
    no_drag = physics_step(state, hover, params, DT, drag=False)
    assert float(no_drag.vel[0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_extra_acceleration_adds_to_the_world_acceleration(quad, make_state):
    params = nominal_drone_params(quad, 1, DT)
    hover = hover_thrust(params)
    state = make_state(1, pos=(0.0, 0.0, 2.0), thrust=hover)
    out = physics_step(state, hover, params, DT, extra_accel=torch.tensor([[0.5, -1.0, -2.0]]))
    assert out.vel[0].tolist() == pytest.approx([0.5 * DT, -1.0 * DT, -2.0 * DT], abs=1e-6)
