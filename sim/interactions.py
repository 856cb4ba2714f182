"""Drone-to-drone interactions within each swarm: neighbours, collisions and downwash.

All of them start from one pairwise pass over the M drones of each environment, (E, M, M) tensors, so
the cost per control step is a single O(M^2) sweep shared by the K-nearest-neighbour observation, the
collision check and response, and the downwash model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoswarm.sim.config import CONTACT_FRICTION
from nanoswarm.sim.tensor_struct import component_major


@dataclass
class Pairwise:
    """Geometry between every ordered pair (i, j) of drones of a swarm; [e, i, j] is j seen from i.

    Components are kept as separate (E, M, M) tensors rather than one (E, M, M, 3) tensor: every
    reduction then runs over the contiguous last axis, which vectorises (and compiles) far better.
    """

    dx: torch.Tensor    # p_j - p_i, per axis
    dy: torch.Tensor
    dz: torch.Tensor
    dvx: torch.Tensor   # v_j - v_i, per axis
    dvy: torch.Tensor
    dvz: torch.Tensor
    dist: torch.Tensor  # |p_j - p_i|, +inf on the diagonal

    @property
    def rel_pos(self) -> torch.Tensor:
        return torch.stack((self.dx, self.dy, self.dz), dim=-1)

    @property
    def rel_vel(self) -> torch.Tensor:
        return torch.stack((self.dvx, self.dvy, self.dvz), dim=-1)


def pair_difference(values: torch.Tensor) -> torch.Tensor:
    """[e, i, j] = values[e, j] - values[e, i] for per-drone values (E, M)."""
    return values.unsqueeze(1) - values.unsqueeze(2)


def pairwise(pos: torch.Tensor, vel: torch.Tensor) -> Pairwise:
    """Pairwise geometry of drones at `pos`, `vel` (E, M, 3)."""
    diff = pair_difference
    dx, dy, dz = diff(pos[..., 0]), diff(pos[..., 1]), diff(pos[..., 2])
    m = pos.shape[1]
    eye = torch.eye(m, dtype=torch.bool, device=pos.device)
    dist = torch.sqrt(dx * dx + dy * dy + dz * dz).masked_fill(eye, float("inf"))
    return Pairwise(dx=dx, dy=dy, dz=dz, dvx=diff(vel[..., 0]), dvy=diff(vel[..., 1]), dvz=diff(vel[..., 2]),
                    dist=dist)


TOPK_FROM_DRONES = 16


def nearest_indices(dist: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (E, M, k) of the k smallest entries of each row of `dist` (E, M, M), smallest first
    (ties to the lower index for small swarms; torch.topk's order for larger ones).

    Small swarms take k rounds of (minimum, its first index, mask it out): branch-free passes that
    torch.compile fuses into the step, where torch.topk stays a separate, costlier call. From
    TOPK_FROM_DRONES drones on, torch.topk wins (measured with `nanoswarm bench sim`).
    """
    m = dist.shape[-1]
    if m >= TOPK_FROM_DRONES:
        return torch.topk(dist, k, dim=-1, largest=False, sorted=True).indices
    order = torch.arange(m, device=dist.device)
    picks = []
    for _ in range(k):
        smallest = dist.amin(-1, keepdim=True)
        pick = torch.where(dist == smallest, order, m).amin(-1, keepdim=True)
        picks.append(pick)
        dist = torch.where(order == pick, float("inf"), dist)
    if not picks:
        return torch.zeros(*dist.shape[:-1], 0, dtype=torch.long, device=dist.device)
    # A row of NaN (a diverged drone) matches nothing and picks m; clamped into range, the NaN flows on to
    # the observation, where the caller's finite check names it.
    return torch.cat(picks, dim=-1).clamp_max(m - 1)


def nearest_neighbors(pw: Pairwise, pos: torch.Tensor, vel: torch.Tensor, k: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k nearest other drones of each drone, nearest first.

    Returns indices (E, M, k) and the neighbours' position and velocity relative to the drone
    (E, M, k, 3), gathered from the drones' own `pos` and `vel` (E, M, 3).
    """
    idx = nearest_indices(pw.dist, k)
    m = pos.shape[1]

    def relative(values: torch.Tensor) -> torch.Tensor:
        picked = torch.gather(values.unsqueeze(1).expand(-1, m, -1, -1), 2,
                              idx.unsqueeze(-1).expand(*idx.shape, 3))
        return picked - values.unsqueeze(2)

    return idx, relative(pos), relative(vel)


COLLISION_PASSES = 3  # impulse passes per step; contacts are counted on the first


@dataclass(frozen=True)
class CollisionResponse:
    """How two drones that touch bounce off each other (see `resolve_drone_collisions`)."""

    restitution: float = 0.5        # fraction of the approach speed kept along the contact normal
    spin_kick: tuple[float, float] = (0.0, 0.0)  # rad/s range of the random body-rate kick on impact
    friction: float = CONTACT_FRICTION  # Coulomb coefficient of the tangential impulse (see `ContactBodies`)


@dataclass
class ContactBodies:
    """What the tangential (friction) response needs to know of each drone, (E, M, ...) tensors.

    A drone is a rigid sphere of `radius` (the collision radius) with its mass and diagonal body inertia;
    a contact point lies on that sphere, so a tangential impulse J_t there also applies the torque
    (lever x J_t), the physics by which a glancing contact spins a drone.
    """

    mass: torch.Tensor     # (E, M) kg
    inertia: torch.Tensor  # (E, M, 3) kg m^2, diagonal, body frame
    rot: torch.Tensor      # (E, M, 3, 3) body-to-world rotation
    radius: float          # m


def _world_rates(omega: torch.Tensor, rot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Body rates (E, M, 3) as world-frame components, R omega."""
    w = (rot * omega.unsqueeze(-2)).sum(-1)
    return w[..., 0], w[..., 1], w[..., 2]


def _along_body_axis(rot: torch.Tensor, k: int, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The component of a world vector (x, y, z) along body axis k (R's column k): (R^T v)_k."""
    return rot[..., 0, k] * x + rot[..., 1, k] * y + rot[..., 2, k] * z


def _rates_change(tx: torch.Tensor, ty: torch.Tensor, tz: torch.Tensor, rot: torch.Tensor,
                  inertia: torch.Tensor) -> torch.Tensor:
    """Body-rate change (E, M, 3) from an angular impulse with world components (E, M) each:
    I^-1 R^T (angular impulse)."""
    return component_major(*(_along_body_axis(rot, k, tx, ty, tz) / inertia[..., k] for k in range(3)))


def _inverse_inertia_forms(bx: torch.Tensor, by: torch.Tensor, bz: torch.Tensor, tx: torch.Tensor,
                           ty: torch.Tensor, tz: torch.Tensor, rot: torch.Tensor, inertia: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """b^T A b, t^T A t and b^T A t for the world inverse inertia A = R I^-1 R^T of a drone and world
    directions b, t (components broadcastable against rot's leading shape), through the body axes (R's
    columns): A's quadratic forms are sums over the body axes k of (axis_k . b)(axis_k . t) / I_k."""
    bb = tt = bt = torch.zeros_like(bx)
    for k in range(3):
        along_b, along_t = _along_body_axis(rot, k, bx, by, bz), _along_body_axis(rot, k, tx, ty, tz)
        inv = 1.0 / inertia[..., k]
        bb, tt, bt = bb + along_b * along_b * inv, tt + along_t * along_t * inv, bt + along_b * along_t * inv
    return bb, tt, bt


def _sticking_impulse(slip: torch.Tensor, inv_mass: torch.Tensor, bb: torch.Tensor, tt: torch.Tensor,
                      bt: torch.Tensor, r: float, bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tangential impulse, as components (along t, along b), that stops a contact sliding at `slip`
    along t (b = n x t), clipped to the Coulomb disc of radius `bound`.

    In the tangent basis (t, b), an impulse P at the contact point changes the sliding velocity by K P with
        K = (inv_mass) 1 + r^2 [[b^T A b, -b^T A t], [-b^T A t, t^T A t]]
    (A: the inverse inertia of the bodies, summed; a lever r n turns t into b and b into -t), so sticking
    takes P = K^-1 (slip, 0). Scaling P onto the disc keeps it dissipative: the energy change
    (s^2 / 2 - s) P^T K P is negative for any scale s in (0, 1].
    """
    k_tt = inv_mass + r * r * bb
    k_bb = inv_mass + r * r * tt
    k_tb = -r * r * bt
    scale = slip / (k_tt * k_bb - k_tb * k_tb)
    along_t, along_b = scale * k_bb, -scale * k_tb
    size = torch.sqrt(along_t * along_t + along_b * along_b)
    clip = torch.minimum(torch.ones_like(size), bound / size.clamp_min(1e-12))
    return along_t * clip, along_b * clip


def _slip_basis(vx: torch.Tensor, vy: torch.Tensor, vz: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor,
                wz: torch.Tensor, nx: torch.Tensor, ny: torch.Tensor, nz: torch.Tensor, r: float
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """How a contact point at lever -r n slides: u = v - r w x n, its tangential part u_t = u - (u.n) n.
    Returns |u_t|, the unit slip direction t and b = n x t (components each): the tangent basis in which
    the friction impulse is solved."""
    ux = vx - r * (wy * nz - wz * ny)
    uy = vy - r * (wz * nx - wx * nz)
    uz = vz - r * (wx * ny - wy * nx)
    un = ux * nx + uy * ny + uz * nz
    tx, ty, tz = ux - un * nx, uy - un * ny, uz - un * nz
    slip = torch.sqrt(tx * tx + ty * ty + tz * tz)
    inv_slip = 1.0 / slip.clamp_min(1e-9)
    tx, ty, tz = tx * inv_slip, ty * inv_slip, tz * inv_slip
    return slip, (tx, ty, tz), (ny * tz - nz * ty, nz * tx - nx * tz, nx * ty - ny * tx)


def _drone_friction(pw: Pairwise, nx: torch.Tensor, ny: torch.Tensor, nz: torch.Tensor, vx: torch.Tensor,
                    vy: torch.Tensor, vz: torch.Tensor, omega: torch.Tensor, normal_dv: torch.Tensor,
                    bodies: ContactBodies, mu: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Coulomb tangential impulse of every drone pair that exchanged a normal impulse this step.

    Pair (i, j), n the unit normal from i to j, r the collision radius. The contact points are p_i + r n
    and p_j - r n, so j's contact point slides over i's at
        u = (v_j - v_i) - r (w_i + w_j) x n        (w: body rates in the world frame),
    tangentially u_t = u - (u.n) n, along t = u_t / |u_t|. An impulse P (tangential) on i and -P on j
    changes u_t by -K P, K = (1/m_i + 1/m_j) 1 + r^2 [n]x^T (A_i + A_j) [n]x with A = R I^-1 R^T the
    world inverse inertia; sticking takes P = K^-1 u_t, and Coulomb's law bounds |P| by mu J_n, J_n =
    m_ij |dv_n| the normal impulse (m_ij = 2 m_i m_j / (m_i + m_j), the impulse that changed each drone's
    normal velocity by dv_n; `_sticking_impulse`). Both drones get the angular impulse r n x P.
    All pairs are solved at once (one Jacobi pass); a drone in c such contacts counts with c times its
    inverse mass and inertia in K (mass splitting), so its simultaneous contacts cannot together reverse
    its slip. Returns velocity components (E, M) each and the change of the body rates (E, M, 3).
    """
    r = bodies.radius
    rot, inertia, mass = bodies.rot, bodies.inertia, bodies.mass
    wx, wy, wz = _world_rates(omega, rot)
    sx, sy, sz = (w.unsqueeze(1) + w.unsqueeze(2) for w in (wx, wy, wz))  # w_i + w_j
    slip, (tx, ty, tz), (bx, by, bz) = _slip_basis(pair_difference(vx), pair_difference(vy), pair_difference(vz),
                                                   sx, sy, sz, nx, ny, nz, r)
    m_i, m_j = mass.unsqueeze(2), mass.unsqueeze(1)
    normal_impulse = 2.0 * m_i * m_j / (m_i + m_j) * normal_dv
    active = (normal_impulse > 0.0) & (slip > 1e-6)
    count = active.sum(-1).clamp_min(1).to(slip.dtype)                        # (E, M) contacts per drone
    c_i, c_j = count.unsqueeze(2), count.unsqueeze(1)
    forms_i = _inverse_inertia_forms(bx, by, bz, tx, ty, tz, rot.unsqueeze(2), inertia.unsqueeze(2))
    forms_j = _inverse_inertia_forms(bx, by, bz, tx, ty, tz, rot.unsqueeze(1), inertia.unsqueeze(1))
    bb, tt, bt = (c_i * f_i + c_j * f_j for f_i, f_j in zip(forms_i, forms_j))
    along_t, along_b = _sticking_impulse(slip, c_i / m_i + c_j / m_j, bb, tt, bt, r, mu * normal_impulse)
    along_t, along_b = torch.where(active, along_t, 0.0), torch.where(active, along_b, 0.0)
    px, py, pz = along_t * tx + along_b * bx, along_t * ty + along_b * by, along_t * tz + along_b * bz
    vx, vy, vz = vx + px.sum(-1) / mass, vy + py.sum(-1) / mass, vz + pz.sum(-1) / mass
    # r n x P = r (along_t b - along_b t), the same for both drones of the pair.
    ax, ay, az = (along_t * b - along_b * t for b, t in ((bx, tx), (by, ty), (bz, tz)))
    d_omega = _rates_change(r * ax.sum(-1), r * ay.sum(-1), r * az.sum(-1), rot, inertia)
    return vx, vy, vz, d_omega


def resolve_drone_collisions(
    pw: Pairwise, vel: torch.Tensor, omega: torch.Tensor, contact_distance: float,
    response: CollisionResponse, kick_noise: torch.Tensor | None, bodies: ContactBodies | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detect drone-drone impacts and apply an impulsive response.

    A pair is an impact when the centres are closer than `contact_distance` and the drones approach
    each other, so a touching pair counts once, not on every step it stays in contact.
    The response exchanges momentum along the contact normal (equal masses, with restitution), pushes
    the pair apart to the contact distance, applies Coulomb friction at the contact points (with `bodies`
    and a positive `response.friction`; see `_drone_friction`), and, if asked, kicks the body rates at
    random as a propeller strike does.

    kick_noise: (E, M, 4) uniform draws in [0, 1) (three for the axis, one for the magnitude), or None.
    bodies: the drones' mass, inertia and attitude; without them the contact is frictionless.
    Returns new vel (E, M, 3), a position correction (E, M, 3), new omega (E, M, 3) and the number of
    impacts per drone (E, M).
    """
    inv = 1.0 / pw.dist.clamp_min(1e-6)                        # 0 on the diagonal (1 / inf)
    nx, ny, nz = pw.dx * inv, pw.dy * inv, pw.dz * inv          # unit normal i -> j
    touching = pw.dist < contact_distance
    impact = touching & (pw.dvx * nx + pw.dvy * ny + pw.dvz * nz < 0.0)
    # Equal masses: each drone of a closing pair gets half of (1 + e) times the closing speed along
    # the normal. A drone touching several others can be pushed into one by another's impulse, so the
    # impulses are applied in a few passes (Jacobi iterations) until no touching pair still closes.
    gain = 0.5 * (1.0 + response.restitution)
    vx, vy, vz = vel.unbind(-1)
    friction = bodies is not None and response.friction > 0.0
    normal_dv = torch.zeros_like(pw.dist) if friction else None   # |normal velocity change| per pair
    for _ in range(COLLISION_PASSES):
        approach = pair_difference(vx) * nx + pair_difference(vy) * ny + pair_difference(vz) * nz      # < 0 when closing
        push = gain * torch.where(touching & (approach < 0.0), approach, 0.0)
        vx, vy, vz = vx + (push * nx).sum(-1), vy + (push * ny).sum(-1), vz + (push * nz).sum(-1)
        if normal_dv is not None:
            normal_dv = normal_dv - push
    if bodies is not None and normal_dv is not None:
        vx, vy, vz, d_omega = _drone_friction(pw, nx, ny, nz, vx, vy, vz, omega, normal_dv, bodies,
                                              response.friction)
        omega = omega + d_omega
    vel = component_major(vx, vy, vz)
    # Separate touching pairs to the contact distance, half the overlap each.
    sep = -0.5 * torch.where(touching, contact_distance - pw.dist.clamp_max(contact_distance), 0.0)
    pos_fix = component_major((sep * nx).sum(-1), (sep * ny).sum(-1), (sep * nz).sum(-1))
    impacts = impact.sum(-1)
    if kick_noise is not None and response.spin_kick[1] > 0.0:
        axis = kick_noise[..., :3] * 2.0 - 1.0
        axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp_min(1e-6)
        low, high = response.spin_kick
        magnitude = low + (high - low) * kick_noise[..., 3:4]
        omega = torch.where((impacts > 0).unsqueeze(-1), omega + axis * magnitude, omega)
    return vel, pos_fix, omega, impacts


def static_contact_friction(vel_before: torch.Tensor, vel_after: torch.Tensor, omega: torch.Tensor,
                            bodies: ContactBodies, mu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coulomb friction of the drones' contacts with fixed bodies (columns, walls, ceiling).

    The fixed bodies' responses change only the normal velocity, so vel_after - vel_before (E, M, 3) is
    the normal velocity change dv_n of each drone: n = dv_n / |dv_n| points out of the body touched, the
    normal impulse is m |dv_n|, and the contact point is at -r n from the drone's centre. As between two
    drones (`_drone_friction`), with the fixed body's inverse mass and inertia zero: the contact point
    slides at u_t, the tangential part of v - r w x n, an impulse F there changes that by K F with
    K = (1/m) 1 + r^2 [n]x^T A [n]x, and F = -K^-1 u_t clipped to |F| <= mu m |dv_n| changes the velocity
    by F / m and the rates by the angular impulse -r n x F.
    Returns the new velocity (E, M, 3) and body rates (E, M, 3).
    """
    r = bodies.radius
    rot, inertia, mass = bodies.rot, bodies.inertia, bodies.mass
    dvx, dvy, dvz = (vel_after - vel_before).unbind(-1)
    jump = torch.sqrt(dvx * dvx + dvy * dvy + dvz * dvz)
    inv_jump = 1.0 / jump.clamp_min(1e-9)
    nx, ny, nz = dvx * inv_jump, dvy * inv_jump, dvz * inv_jump
    wx, wy, wz = _world_rates(omega, rot)
    vx, vy, vz = vel_after.unbind(-1)
    slip, (tx, ty, tz), (bx, by, bz) = _slip_basis(vx, vy, vz, wx, wy, wz, nx, ny, nz, r)
    bb, tt, bt = _inverse_inertia_forms(bx, by, bz, tx, ty, tz, rot, inertia)
    along_t, along_b = _sticking_impulse(slip, 1.0 / mass, bb, tt, bt, r, mu * mass * jump)
    active = (jump > 1e-9) & (slip > 1e-6)
    along_t, along_b = torch.where(active, -along_t, 0.0), torch.where(active, -along_b, 0.0)   # F = -K^-1 u_t
    vel = component_major(*(v + (along_t * t + along_b * b) / mass
                            for v, t, b in ((vx, tx, bx), (vy, ty, by), (vz, tz, bz))))
    # -r n x F = -r (along_t b - along_b t)
    ax, ay, az = (-r * (along_t * b - along_b * t) for b, t in ((bx, tx), (by, ty), (bz, tz)))
    return vel, omega + _rates_change(ax, ay, az, rot, inertia)


@dataclass(frozen=True)
class DownwashModel:
    """Extra downward acceleration on a drone flying in the wake of one above it.

    The wake is a vertical cylinder of `radius` and `length` below each drone; inside it the lower drone
    is pushed down by accel_at_zero - accel_slope * d, d the vertical gap in metres. The default constants
    are the fit to Neural-Swarm data used by quad-swarm-rl (shared/reference/anchors.md: (6/17)(7 - 10 d)).
    """

    enabled: bool = True
    radius: float = 0.1
    length: float = 0.7
    accel_at_zero: float = 42.0 / 17.0
    accel_slope: float = 60.0 / 17.0


def downwash_accel(pw: Pairwise, model: DownwashModel) -> torch.Tensor:
    """World acceleration (E, M, 3) on each drone from all drones above it."""
    dz = pw.dz                                                # height of j above i
    horizontal = torch.sqrt(pw.dx * pw.dx + pw.dy * pw.dy)
    inside = (dz > 0.0) & (dz < model.length) & (horizontal < model.radius)
    push = torch.where(inside, (model.accel_at_zero - model.accel_slope * dz).clamp_min(0.0), 0.0)
    down = -push.sum(-1)
    zero = torch.zeros_like(down)
    return component_major(zero, zero, down)
