"""Drone-to-drone interactions within each swarm: neighbours, collisions and downwash.

All of them start from one pairwise pass over the M drones of each environment, (E, M, M) tensors, so
the cost per control step is a single O(M^2) sweep shared by the K-nearest-neighbour observation, the
collision check and response, and the downwash model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


def resolve_drone_collisions(
    pw: Pairwise, vel: torch.Tensor, omega: torch.Tensor, contact_distance: float,
    response: CollisionResponse, kick_noise: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detect drone-drone impacts and apply an impulsive response.

    A pair is an impact when the centres are closer than `contact_distance` and the drones approach
    each other, so a touching pair counts once, not on every step it stays in contact.
    The response exchanges momentum along the contact normal (equal masses, with restitution), pushes
    the pair apart to the contact distance, and kicks the body rates as a propeller strike does.

    kick_noise: (E, M, 4) uniform draws in [0, 1) (three for the axis, one for the magnitude), or None.
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
    for _ in range(COLLISION_PASSES):
        approach = pair_difference(vx) * nx + pair_difference(vy) * ny + pair_difference(vz) * nz      # < 0 when closing
        push = gain * torch.where(touching & (approach < 0.0), approach, 0.0)
        vx, vy, vz = vx + (push * nx).sum(-1), vy + (push * ny).sum(-1), vz + (push * nz).sum(-1)
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
