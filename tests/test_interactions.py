"""Specification of drone-drone interactions (`nanoswarm.sim.interactions`): neighbours, impacts, downwash.

The batched code is checked against plain Python loops over pairs on random swarms.
"""

from __future__ import annotations

import math

import pytest
import torch

from nanoswarm.sim.interactions import (CollisionResponse, DownwashModel, downwash_accel, nearest_neighbors,
                                        pairwise, resolve_drone_collisions)

CONTACT = 0.126    # two Crazyflies of collision radius 0.063 m touch at this centre distance


def random_swarms(seed: int, e: int, m: int, box: float, speed: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    pos = (torch.rand(e, m, 3, generator=gen) - 0.5) * box
    vel = (torch.rand(e, m, 3, generator=gen) - 0.5) * 2.0 * speed
    return pos, vel


def vec(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t]


def sub(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def norm(a: list[float]) -> float:
    return math.sqrt(sum(x * x for x in a))


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------- neighbours
def test_pairwise_geometry_matches_brute_force():
    pos, vel = random_swarms(0, 3, 5, box=4.0)
    pw = pairwise(pos, vel)
    for e in range(3):
        for i in range(5):
            for j in range(5):
                if i == j:
                    assert math.isinf(float(pw.dist[e, i, j]))
                    continue
                rel = sub(vec(pos[e, j]), vec(pos[e, i]))
                assert vec(pw.rel_pos[e, i, j]) == pytest.approx(rel, abs=1e-6)
                assert vec(pw.rel_vel[e, i, j]) == pytest.approx(sub(vec(vel[e, j]), vec(vel[e, i])), abs=1e-6)
                assert float(pw.dist[e, i, j]) == pytest.approx(norm(rel), rel=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_nearest_neighbors_match_brute_force(seed):
    """For random E, M and K < M: the K nearest other drones, nearest first, with p_j - p_i and v_j - v_i."""
    gen = torch.Generator().manual_seed(100 + seed)
    e = int(torch.randint(1, 5, (1,), generator=gen))
    m = int(torch.randint(2, 12, (1,), generator=gen))
    k = int(torch.randint(1, m, (1,), generator=gen))
    pos, vel = random_swarms(seed, e, m, box=3.0)
    idx, rel_pos, rel_vel = nearest_neighbors(pairwise(pos, vel), pos, vel, k)
    assert idx.shape == (e, m, k) and rel_pos.shape == (e, m, k, 3) and rel_vel.shape == (e, m, k, 3)
    for env in range(e):
        for i in range(m):
            others = sorted((j for j in range(m) if j != i),
                            key=lambda j: norm(sub(vec(pos[env, j]), vec(pos[env, i]))))[:k]
            assert idx[env, i].tolist() == others
            for slot, j in enumerate(others):
                assert vec(rel_pos[env, i, slot]) == pytest.approx(sub(vec(pos[env, j]), vec(pos[env, i])), abs=1e-6)
                assert vec(rel_vel[env, i, slot]) == pytest.approx(sub(vec(vel[env, j]), vec(vel[env, i])), abs=1e-6)


def test_a_drone_is_never_its_own_neighbour():
    pos = torch.zeros(1, 4, 3)                 # all drones at one point: every distance ties at zero
    idx, _, _ = nearest_neighbors(pairwise(pos, torch.zeros(1, 4, 3)), pos, torch.zeros(1, 4, 3), 3)
    for i in range(4):
        assert sorted(idx[0, i].tolist()) == [j for j in range(4) if j != i]


# ------------------------------------------------------------------------------------------ collisions
def brute_force_impacts(pos: torch.Tensor, vel: torch.Tensor, contact: float) -> list[list[list[int]]]:
    """For every env and drone, the partners it is touching and approaching."""
    e, m = pos.shape[:2]
    out = []
    for env in range(e):
        rows = []
        for i in range(m):
            partners = []
            for j in range(m):
                if i == j:
                    continue
                rel = sub(vec(pos[env, j]), vec(pos[env, i]))
                d = norm(rel)
                closing = dot(sub(vec(vel[env, j]), vec(vel[env, i])), rel) / d
                if d < contact and closing < 0.0:
                    partners.append(j)
            rows.append(partners)
        out.append(rows)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_impact_counts_match_brute_force(seed):
    """Impacts per drone = the pairs closer than the contact distance whose centres approach."""
    pos, vel = random_swarms(seed, 4, 12, box=0.5)         # dense: many contacts, some approaching
    pw = pairwise(pos, vel)
    _, _, _, impacts = resolve_drone_collisions(pw, vel, torch.zeros_like(vel), CONTACT, CollisionResponse(), None)
    reference = brute_force_impacts(pos, vel, CONTACT)
    expected = torch.tensor([[len(p) for p in env] for env in reference])
    assert int(expected.sum()) > 0, "the random case should contain impacts"
    assert torch.equal(impacts.long(), expected)


@pytest.mark.parametrize("restitution", [0.0, 0.5, 1.0])
def test_collision_response_conserves_momentum_of_equal_masses(restitution):
    pos, vel = random_swarms(11, 4, 12, box=0.5)
    new_vel, pos_fix, _, impacts = resolve_drone_collisions(
        pairwise(pos, vel), vel, torch.zeros_like(vel), CONTACT, CollisionResponse(restitution=restitution), None)
    assert int(impacts.sum()) > 0
    assert not torch.allclose(new_vel, vel)
    assert torch.allclose(new_vel.sum(1), vel.sum(1), atol=1e-5)
    assert torch.allclose(pos_fix.sum(1), torch.zeros(4, 3), atol=1e-6)   # separation moves no centre of mass


def isolated_pairs(seed: int, count: int, approaching: bool):
    """`count` envs of 4 drones: one touching pair (0, 1) near the origin, and two drones far away."""
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(count, 3, generator=gen)
    normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
    gap = CONTACT * (0.5 + 0.45 * torch.rand(count, 1, generator=gen))
    pos = torch.zeros(count, 4, 3)
    pos[:, 1] = normal * gap
    pos[:, 2] = torch.tensor((5.0, 0.0, 0.0))
    pos[:, 3] = torch.tensor((-5.0, 0.0, 0.0))
    vel = torch.randn(count, 4, 3, generator=gen)
    closing = ((vel[:, 1] - vel[:, 0]) * normal).sum(-1, keepdim=True)
    # Flip the relative normal speed to the requested sign.
    sign = -1.0 if approaching else 1.0
    fix = torch.where(closing * sign < 0, -2.0 * closing, torch.zeros_like(closing))
    vel[:, 1] = vel[:, 1] + fix * normal
    return pos, vel, normal, gap


@pytest.mark.parametrize("restitution", [0.0, 0.5, 1.0])
def test_impacting_pair_separates_with_the_restitution(restitution):
    """After the response an impacting pair no longer approaches: its separating speed along the normal
    is the restitution times its approach speed, the tangential motion is kept, and the pair is pushed
    apart to exactly the contact distance."""
    pos, vel, normal, gap = isolated_pairs(12, 32, approaching=True)
    pw = pairwise(pos, vel)
    new_vel, pos_fix, _, impacts = resolve_drone_collisions(
        pw, vel, torch.zeros_like(vel), CONTACT, CollisionResponse(restitution=restitution), None)
    assert impacts.tolist() == [[1, 1, 0, 0]] * 32
    before = ((vel[:, 1] - vel[:, 0]) * normal).sum(-1)
    after = ((new_vel[:, 1] - new_vel[:, 0]) * normal).sum(-1)
    assert bool((before < 0).all())
    assert torch.allclose(after, -restitution * before, atol=1e-5)
    assert bool((after >= -1e-6).all())                     # nobody still approaches
    tangential = lambda v: v - (v * normal).sum(-1, keepdim=True) * normal  # noqa: E731
    assert torch.allclose(tangential(new_vel[:, 0]), tangential(vel[:, 0]), atol=1e-5)
    assert torch.equal(new_vel[:, 2:], vel[:, 2:])
    separated = torch.linalg.vector_norm((pos[:, 1] + pos_fix[:, 1]) - (pos[:, 0] + pos_fix[:, 0]), dim=-1)
    assert torch.allclose(separated, torch.full((32,), CONTACT), atol=1e-5)
    assert torch.equal(pos_fix[:, 2:], torch.zeros(32, 2, 3))


@pytest.mark.parametrize("seed", range(3))
def test_no_impacting_pair_still_approaches_after_the_response(seed):
    """On random swarms (12 drones in a 0.8 m box, some drones touching two others): every pair that
    was an impact separates (or at least stops closing) after the response, so it is counted once."""
    pos, vel = random_swarms(30 + seed, 100, 12, box=0.8)
    pw = pairwise(pos, vel)
    new_vel, _, _, impacts = resolve_drone_collisions(
        pw, vel, torch.zeros_like(vel), CONTACT, CollisionResponse(), None)
    assert int(impacts.sum()) > 0
    for env, rows in enumerate(brute_force_impacts(pos, vel, CONTACT)):
        for i, partners in enumerate(rows):
            for j in partners:
                rel = sub(vec(pos[env, j]), vec(pos[env, i]))
                closing = dot(sub(vec(new_vel[env, j]), vec(new_vel[env, i])), rel) / norm(rel)
                assert closing >= -1e-3, f"env {env}: drones {i} and {j} still approach at {closing:.3g} m/s"


def test_touching_pair_moving_apart_is_not_an_impact():
    """A touching pair that already separates keeps its velocities (it was counted when it hit) and is
    only pushed apart."""
    pos, vel, _, _ = isolated_pairs(13, 16, approaching=False)
    new_vel, pos_fix, _, impacts = resolve_drone_collisions(
        pairwise(pos, vel), vel, torch.zeros_like(vel), CONTACT, CollisionResponse(), None)
    assert int(impacts.sum()) == 0
    assert torch.equal(new_vel, vel)
    assert float(pos_fix[:, :2].abs().max()) > 0.0


def test_spin_kick_hits_only_impacting_drones_within_its_range():
    pos, vel, _, _ = isolated_pairs(14, 16, approaching=True)
    omega = torch.zeros_like(vel)
    kick = torch.rand(16, 4, 4, generator=torch.Generator().manual_seed(15))
    low, high = 10 * math.pi, 20 * math.pi
    _, _, new_omega, _ = resolve_drone_collisions(
        pairwise(pos, vel), vel, omega, CONTACT, CollisionResponse(spin_kick=(low, high)), kick)
    size = torch.linalg.vector_norm(new_omega, dim=-1)
    assert bool(((size[:, :2] >= low - 1e-3) & (size[:, :2] <= high + 1e-3)).all())
    assert torch.allclose(size[:, :2], low + (high - low) * kick[:, :2, 3], rtol=1e-5)
    assert torch.equal(new_omega[:, 2:], omega[:, 2:])


# ------------------------------------------------------------------------------------------- downwash
def documented_downwash(gap: float) -> float:
    """The documented wake acceleration (6/17)(7 - 10 d) at vertical gap d (m/s^2, downwards)."""
    return max(0.0, 6.0 / 17.0 * (7.0 - 10.0 * gap))


@pytest.mark.parametrize("gap", [0.05, 0.3, 0.6])
def test_drone_below_another_gets_the_documented_downwash(gap):
    pos = torch.tensor([[[0.0, 0.0, 1.0], [0.05, -0.04, 1.0 + gap]]])
    accel = downwash_accel(pairwise(pos, torch.zeros_like(pos)), DownwashModel())
    assert vec(accel[0, 0]) == pytest.approx([0.0, 0.0, -documented_downwash(gap)], rel=1e-5, abs=1e-6)
    assert vec(accel[0, 1]) == [0.0, 0.0, 0.0]       # the wake goes down, never up


@pytest.mark.parametrize("offset", [(0.12, 0.0, 0.3), (0.0, 0.0, 0.75), (0.08, 0.08, 0.3), (0.0, 0.0, -0.3)],
                         ids=["beside_the_wake", "below_the_wake", "diagonal_outside_radius", "above"])
def test_drone_outside_the_wake_feels_no_downwash(offset):
    pos = torch.tensor([[[0.0, 0.0, 1.0], [offset[0], offset[1], 1.0 + offset[2]]]])
    accel = downwash_accel(pairwise(pos, torch.zeros_like(pos)), DownwashModel())
    assert float(accel[0, 0].abs().max()) == 0.0


def test_wakes_of_several_drones_add_up():
    pos = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 1.2], [0.03, 0.0, 1.5]]])
    accel = downwash_accel(pairwise(pos, torch.zeros_like(pos)), DownwashModel())
    assert float(accel[0, 0, 2]) == pytest.approx(-(documented_downwash(0.2) + documented_downwash(0.5)), rel=1e-5)
    assert float(accel[0, 1, 2]) == pytest.approx(-documented_downwash(0.3), rel=1e-5)
    assert float(accel[0, 2, 2]) == 0.0


def test_downwash_matches_brute_force_on_random_swarms():
    pos, vel = random_swarms(21, 3, 10, box=0.6)
    model = DownwashModel()
    accel = downwash_accel(pairwise(pos, vel), model)
    assert int((accel[..., 2] < 0).sum()) > 3, "the random case should put some drones in wakes"
    for e in range(3):
        for i in range(10):
            total = 0.0
            for j in range(10):
                dx, dy, dz = sub(vec(pos[e, j]), vec(pos[e, i]))
                if j != i and 0.0 < dz < model.length and math.hypot(dx, dy) < model.radius:
                    total += documented_downwash(dz)
            assert vec(accel[e, i]) == pytest.approx([0.0, 0.0, -total], abs=1e-5)
