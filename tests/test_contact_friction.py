"""Coulomb friction of the torch simulator's contacts (issue 6): a tangential impulse at the rim of each
drone's collision sphere, bounded by mu times the normal impulse, that slows the sliding of the contact
points and spins the drones through their inertia. pybullet's contacts have it (tests/test_bullet.py
cross-checks the two engines on a glancing contact); a policy that never met the spin in training fell out of it.
"""

from __future__ import annotations

import math

import pytest
import torch

from nanoswarm.config import ConfigError
from nanoswarm.sim.config import CONTACT_FRICTION, EnvConfig, NoiseConfig
from nanoswarm.sim.dynamics import action_for_thrust, hover_thrust, quat_from_rotvec, rotation_matrix
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.interactions import (CollisionResponse, ContactBodies, pairwise, resolve_drone_collisions,
                                        static_contact_friction)
from nanoswarm.sim.params import load_params

PARAMS = load_params("crazyflie21_sysid")
R = PARAMS.collision_radius
CONTACT = 2.0 * R


def bodies_for(quat: torch.Tensor, mass_spread: float = 0.0, seed: int = 0) -> ContactBodies:
    """Crazyflies at attitudes quat (E, M, 4), masses and inertias spread by +-mass_spread at random."""
    gen = torch.Generator().manual_seed(seed)
    shape = quat.shape[:-1]
    scale = 1.0 + mass_spread * (2.0 * torch.rand(*shape, generator=gen) - 1.0)
    inertia = torch.tensor(PARAMS.inertia) * (1.0 + mass_spread * (2.0 * torch.rand(*shape, 3, generator=gen) - 1.0))
    return ContactBodies(mass=PARAMS.mass * scale, inertia=inertia, rot=rotation_matrix(quat), radius=R)


def random_attitudes(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return quat_from_rotvec(2.0 * torch.randn(*shape, 3, generator=gen))


def dense_swarms(seed: int, envs: int, drones: int, box: float):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(envs, drones, 3, generator=gen) * box
    vel = torch.randn(envs, drones, 3, generator=gen)
    omega = 5.0 * torch.randn(envs, drones, 3, generator=gen)
    return pos, vel, omega


def glancing_pair(envs: int, seed: int):
    """`envs` isolated pairs (drones 0 and 1) just touching, closing along a random normal, with random
    tangential velocities and body rates; drones 2 and 3 far away."""
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(envs, 3, generator=gen)
    normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
    pos = torch.zeros(envs, 4, 3)
    pos[:, 1] = normal * (0.999 * CONTACT)
    pos[:, 2], pos[:, 3] = torch.tensor((5.0, 0.0, 0.0)), torch.tensor((-5.0, 0.0, 0.0))
    vel = torch.randn(envs, 4, 3, generator=gen)
    closing = ((vel[:, 1] - vel[:, 0]) * normal).sum(-1, keepdim=True)
    vel[:, 1] = vel[:, 1] - (closing.abs() + closing + 0.2) * normal        # approaching by at least 0.2 m/s
    omega = 3.0 * torch.randn(envs, 4, 3, generator=gen)
    return pos, vel, omega, normal


def kinetic_energy(vel: torch.Tensor, omega: torch.Tensor, bodies: ContactBodies) -> torch.Tensor:
    """Translational plus rotational energy (E,) of each environment."""
    return (0.5 * bodies.mass * vel.square().sum(-1) + 0.5 * (bodies.inertia * omega.square()).sum(-1)).sum(-1)


def angular_momentum(pos: torch.Tensor, vel: torch.Tensor, omega: torch.Tensor, bodies: ContactBodies) -> torch.Tensor:
    """Total angular momentum (E, 3) about the origin: orbital m p x v plus spin R I omega."""
    spin = (bodies.rot * (bodies.inertia * omega).unsqueeze(-2)).sum(-1)
    return (bodies.mass.unsqueeze(-1) * torch.linalg.cross(pos, vel) + spin).sum(1)


def respond(pos, vel, omega, bodies, **response):
    return resolve_drone_collisions(pairwise(pos, vel), vel, omega, CONTACT, CollisionResponse(**response), None,
                                    bodies)


# ------------------------------------------------------------------------------------------- config
def test_default_friction_is_pybullets_and_is_validated():
    assert EnvConfig().contact_friction == CONTACT_FRICTION == CollisionResponse().friction
    for bad in (-0.1, 2.5):
        with pytest.raises(ConfigError, match="contact_friction"):
            EnvConfig(contact_friction=bad).validate()


def two_drone_env(seed: int, friction: float | None) -> SwarmEnv:
    """Two drones, no noise or downwash, reset; contact friction as configured (None: the default)."""
    changes = {} if friction is None else {"contact_friction": friction}
    env = SwarmEnv(EnvConfig(num_envs=1, drones_per_swarm=2, num_neighbors=1, scenario="hover",
                             noise=NoiseConfig.off(), downwash=False, seed=seed, **changes))
    env.reset()
    return env


def test_the_environment_steps_with_the_configured_friction():
    """`EnvConfig.contact_friction` reaches the step: the same glancing pass spins the drones with the
    default and leaves them unspun with friction 0."""
    def spin(friction: float | None) -> float:
        env = two_drone_env(3, friction)
        s = env.state
        s.drones.pos[0] = torch.tensor([[-0.2, 0.05, 1.5], [0.2, -0.05, 1.5]])
        s.drones.vel[0] = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
        params = s.params
        hover = action_for_thrust(hover_thrust(params), params)
        for _ in range(30):
            env.step(hover)
        return float(env.state.drones.omega[0, :, 2].abs().max())

    assert spin(None) > 5.0
    assert spin(0.0) < 0.1


# ------------------------------------------------------------------------------------ drone-drone physics
@pytest.mark.parametrize("restitution", [0.0, 0.5, 1.0])
def test_friction_conserves_momentum_and_angular_momentum_and_dissipates_energy(restitution):
    """Friction impulses are equal and opposite at the (common) contact point: linear and angular momentum
    of an isolated pair are kept, and the kinetic energy, rotation included, never grows."""
    pos, vel, omega, _ = glancing_pair(64, seed=1)
    bodies = bodies_for(random_attitudes((64, 4), seed=2), mass_spread=0.1, seed=3)
    frictionless, _, _, _ = respond(pos, vel, omega, bodies, restitution=restitution, friction=0.0)
    new_vel, _, new_omega, impacts = respond(pos, vel, omega, bodies, restitution=restitution)
    assert impacts[:, :2].eq(1).all()
    momentum = lambda v: (bodies.mass.unsqueeze(-1) * v).sum(1)   # noqa: E731
    assert torch.allclose(momentum(new_vel), momentum(frictionless), atol=1e-6)
    assert float((new_omega[:, :2] - omega[:, :2]).abs().max()) > 1.0          # it does spin them
    centre = pos.clone()
    centre[:, 1] = pos[:, 0] + (pos[:, 1] - pos[:, 0]) / 0.999                # exactly touching: one contact point
    assert torch.allclose(angular_momentum(centre, new_vel, new_omega, bodies),
                          angular_momentum(centre, frictionless, omega, bodies), atol=1e-7)
    assert bool((kinetic_energy(new_vel, new_omega, bodies) <= kinetic_energy(frictionless, omega, bodies) + 1e-7).all())


def test_a_rough_contact_stops_the_sliding_and_a_slippery_one_is_bounded_by_coulomb():
    """With a large mu the contact points stop sliding (the tangential impulse that sticks them is below
    mu J_n); with a small one the tangential impulse is exactly mu J_n, and the slip only slows."""
    pos, vel, omega, normal = glancing_pair(64, seed=4)
    bodies = bodies_for(random_attitudes((64, 4), seed=5))
    frictionless, _, _, _ = respond(pos, vel, omega, bodies, friction=0.0)

    def slip(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        world = (bodies.rot * w.unsqueeze(-2)).sum(-1)
        u = (v[:, 1] - v[:, 0]) - R * torch.linalg.cross(world[:, 0] + world[:, 1], normal)
        return u - (u * normal).sum(-1, keepdim=True) * normal

    rough_vel, _, rough_omega, _ = respond(pos, vel, omega, bodies, friction=2.0)
    assert float(torch.linalg.vector_norm(slip(rough_vel, rough_omega), dim=-1).max()) < 0.05 * float(
        torch.linalg.vector_norm(slip(frictionless, omega), dim=-1).min())
    mu = 0.02
    slippery_vel, _, slippery_omega, _ = respond(pos, vel, omega, bodies, friction=mu)
    normal_dv = ((frictionless[:, 0] - vel[:, 0]) * normal).sum(-1).abs()
    m0, m1 = bodies.mass[:, 0], bodies.mass[:, 1]
    coulomb = mu * 2.0 * m0 * m1 / (m0 + m1) * normal_dv
    tangential = torch.linalg.vector_norm(bodies.mass[:, 0].unsqueeze(-1) * (slippery_vel[:, 0] - frictionless[:, 0]),
                                          dim=-1)
    before = torch.linalg.vector_norm(slip(frictionless, omega), dim=-1)
    after = torch.linalg.vector_norm(slip(slippery_vel, slippery_omega), dim=-1)
    sliding = after > 1e-4
    assert int(sliding.sum()) > 48                                   # most still slide: the bound holds them
    assert torch.allclose(tangential[sliding], coulomb[sliding], rtol=1e-4)
    assert bool((tangential <= coulomb * (1.0 + 1e-4)).all())
    assert bool((after < before).all())


def test_without_bodies_or_friction_the_contact_is_the_frictionless_one():
    pos, vel, omega = dense_swarms(6, 8, 12, box=0.5)
    bodies = bodies_for(random_attitudes((8, 12), seed=7))
    plain = respond(pos, vel, omega, None)
    for result in (respond(pos, vel, omega, bodies, friction=0.0), respond(pos, vel, omega, None, friction=1.0)):
        for a, b in zip(plain, result):
            assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(3))
def test_crowded_contacts_dissipate_energy_and_keep_momentum(seed):
    """Drones touching several others at once (12 in a 0.5 m box): the Jacobi pass with mass splitting
    keeps momentum and never adds kinetic energy over the frictionless response."""
    pos, vel, omega = dense_swarms(20 + seed, 16, 12, box=0.5)
    bodies = bodies_for(random_attitudes((16, 12), seed=seed))
    bodies = ContactBodies(mass=torch.full_like(bodies.mass, PARAMS.mass), inertia=bodies.inertia, rot=bodies.rot,
                           radius=R)
    frictionless, _, _, _ = respond(pos, vel, omega, bodies, friction=0.0)
    new_vel, _, new_omega, impacts = respond(pos, vel, omega, bodies)
    assert int(impacts.sum()) > 20
    assert torch.allclose(new_vel.sum(1), frictionless.sum(1), atol=1e-5)
    assert bool((kinetic_energy(new_vel, new_omega, bodies) <= kinetic_energy(frictionless, omega, bodies) + 1e-6).all())


def test_glancing_pair_in_the_plane_spins_both_drones_the_same_way_about_yaw():
    """Two level drones passing with a lateral offset: the rim contact turns both about z, with the sign of
    the relative motion's moment (drone 0 passes drone 1 on its left: negative yaw), by the sticking
    impulse |u_t| / k (mu J_n is larger here)."""
    offset = 0.1
    along = math.sqrt(CONTACT ** 2 - offset ** 2)
    pos = torch.tensor([[[0.0, 0.0, 1.0], [0.999 * along, -0.999 * offset, 1.0]]])
    vel = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]])
    bodies = bodies_for(torch.tensor([[[1.0, 0.0, 0.0, 0.0]] * 2]))
    _, _, omega, _ = respond(pos, vel, torch.zeros(1, 2, 3), bodies)
    slip = 2.0 * offset / CONTACT                                   # tangential part of the 2 m/s
    k = 2.0 / PARAMS.mass + 2.0 * R * R / PARAMS.inertia[2]
    expected = -R * (slip / k) / PARAMS.inertia[2]                   # about -11 rad/s
    assert torch.allclose(omega[0, :, 2], torch.full((2,), expected), rtol=1e-4)
    assert expected == pytest.approx(-11.0, abs=0.2)
    assert float(omega[0, :, :2].abs().max()) < 1e-4


# ------------------------------------------------------------------------------------------ fixed bodies
def test_a_drone_sliding_into_a_wall_rolls_off_it():
    """A drone moving +x into a wall on its +x side while sliding +y: friction at the contact point
    (+r x) pushes -y and turns it about -z, as a ball rolls along a wall; bounded by Coulomb."""
    bodies = bodies_for(torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]))
    before = torch.tensor([[[1.0, 2.0, 0.0]]])
    after = torch.tensor([[[-0.5, 2.0, 0.0]]])                      # the wall's normal response, e = 0.5
    vel, omega = static_contact_friction(before, after, torch.zeros(1, 1, 3), bodies, CONTACT_FRICTION)
    impulse = PARAMS.mass * (2.0 - float(vel[0, 0, 1]))
    assert impulse == pytest.approx(min(CONTACT_FRICTION * PARAMS.mass * 1.5,
                                        2.0 / (1.0 / PARAMS.mass + R * R / PARAMS.inertia[2])), rel=1e-4)
    assert float(vel[0, 0, 0]) == pytest.approx(-0.5)
    assert float(omega[0, 0, 2]) == pytest.approx(-R * impulse / PARAMS.inertia[2], rel=1e-4)
    # No normal response, no friction: a drone gliding along a wall it does not press keeps its motion.
    vel, omega = static_contact_friction(after, after, torch.zeros(1, 1, 3), bodies, CONTACT_FRICTION)
    assert torch.equal(vel, after) and torch.equal(omega, torch.zeros(1, 1, 3))


# ------------------------------------------------------------------------------------------ environment
def crowded_config(**changes) -> EnvConfig:
    return EnvConfig(num_envs=4, drones_per_swarm=8, num_neighbors=3, scenario="same_goal", seed=21, **changes)


def test_compiled_and_eager_steps_agree_through_contacts():
    """A swarm that meets at one goal, with its contacts, friction and spin, and a drone sliding on the
    floor: compiled and eager steps agree."""
    eager, compiled = SwarmEnv(crowded_config()), SwarmEnv(crowded_config(), compile=True)
    assert torch.equal(eager.reset(), compiled.reset())
    for env in (eager, compiled):
        env.state.drones.pos[:] = env.state.drones.pos[:, :1] + 0.15 * torch.randn(
            4, 8, 3, generator=torch.Generator().manual_seed(0))
        env.state.drones.pos[..., 2].clamp_(min=0.5)
        env.state.drones.vel[:] = torch.randn(4, 8, 3, generator=torch.Generator().manual_seed(1))
        env.state.drones.pos[:, 7, 2] = 0.0                  # and one sliding on the floor, motors idle
        env.state.drones.thrust[:, 7] = 0.0
    params = eager.state.params
    hover = action_for_thrust(hover_thrust(params), params)
    spun = 0.0
    for _ in range(5):
        a, b = eager.step(hover), compiled.step(hover)
        assert torch.allclose(a.observation, b.observation, atol=1e-4)
        assert torch.allclose(eager.state.drones.omega, compiled.state.drones.omega, atol=1e-3)
        spun = max(spun, float(eager.state.drones.omega.abs().max()))
    assert spun > 1.0                                           # contacts happened and turned drones


def test_a_drone_sliding_on_the_floor_is_turned_by_the_floor_friction():
    """Motors idle, a grounded drone sliding +x at 1 m/s: friction at the bottom of its collision sphere
    pushes back on the contact point and turns the drone forward about +y (the start of rolling), on top of
    physics_step's floor brake; with the brake alone its rates stay zero."""
    def slide(friction: float | None) -> tuple[float, float]:
        env = two_drone_env(4, friction)
        s = env.state
        s.drones.pos[0] = torch.tensor([[0.0, 0.0, 0.0], [3.0, 3.0, 1.5]])
        s.drones.vel[0] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        s.drones.thrust[0, 0] = 0.0
        action = torch.zeros(1, 2, 4)
        action[0, 0] = -1.0
        env.step(action)
        return float(env.state.drones.vel[0, 0, 0]), float(env.state.drones.omega[0, 0, 1])

    v_friction, w_friction = slide(None)
    v_brake, w_brake = slide(0.0)
    assert w_brake == 0.0 and w_friction > 1.0
    assert 0.0 < v_friction < v_brake < 0.3                              # friction slows it beyond the brake


def test_drones_resting_on_the_floor_with_idling_motors_stay_put():
    """Motor noise on, rotors idling: drones on the floor neither creep nor tip over (the floor brake holds
    them; a frictional sphere without it rolls away under the rotors' noise and tumbles within 3 s)."""
    env = SwarmEnv(EnvConfig(num_envs=2, drones_per_swarm=4, num_neighbors=2, scenario="hover", seed=6))
    env.reset()
    s = env.state
    start = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    s.drones.pos[:] = start
    s.drones.vel[:] = 0.0
    s.drones.omega[:] = 0.0
    s.drones.quat[:] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    s.drones.thrust[:] = 0.0
    for _ in range(500):
        env.step(torch.full((2, 4, 4), -1.0))
    d = env.state.drones
    assert float((d.pos - start).norm(dim=-1).max()) < 0.01
    assert float((1.0 - 2.0 * (d.quat[..., 1] ** 2 + d.quat[..., 2] ** 2)).min()) > 0.99
