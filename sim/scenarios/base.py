"""What a scenario is, and the sampling helpers scenarios share.

A scenario decides how episodes start (positions, goals, obstacles) and, for dynamic scenarios, how the
goals move during an episode. It is a small class over batched tensors: `start(n)` draws n episodes at
once. Adding a scenario means adding one module and one line in `scenarios/__init__.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nanoswarm.sim.arena import Arena
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.obstacles import ObstacleGrid


@dataclass
class EpisodeStart:
    """Initial conditions of n episodes of M drones."""

    pos: torch.Tensor                 # (n, M, 3)
    goals: torch.Tensor               # (n, M, 3)
    success_radius: torch.Tensor      # (n,)
    goal_period: torch.Tensor         # (n,) seconds between goal changes; inf when goals are fixed
    occupancy: torch.Tensor | None = None  # (n, nx, ny) bool columns; None means none


@dataclass
class ScenarioContext:
    """What every scenario may read: the config, the arena, the swarm size, the device and the RNG."""

    config: EnvConfig
    arena: Arena
    obstacle_grid: ObstacleGrid
    generator: torch.Generator

    @property
    def drones(self) -> int:
        return self.config.drones_per_swarm

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.device)
        return low + (high - low) * u

    def choice(self, n: int, options: int) -> torch.Tensor:
        return torch.randint(options, (n,), generator=self.generator, device=self.device)


class Scenario:
    """Base class: static goals, the config's success radius."""

    name = "base"

    def __init__(self, ctx: ScenarioContext):
        self.ctx = ctx

    def start(self, n: int) -> EpisodeStart:
        raise NotImplementedError

    def next_goals(self, goals: torch.Tensor) -> torch.Tensor:
        """New goals (n, M, 3) for episodes whose goal period has elapsed; static scenarios keep them."""
        return goals

    def _episode(self, pos: torch.Tensor, goals: torch.Tensor, radius: float | None = None,
                 period: torch.Tensor | None = None) -> EpisodeStart:
        n = pos.shape[0]
        r = self.ctx.config.success_radius if radius is None else radius
        return EpisodeStart(
            pos=pos, goals=goals,
            success_radius=torch.full((n,), r, device=self.ctx.device),
            goal_period=torch.full((n,), math.inf, device=self.ctx.device) if period is None else period,
        )


def lattice_points(ctx: ScenarioContext, n: int, low: torch.Tensor, high: torch.Tensor, spacing: float
                   ) -> torch.Tensor:
    """M distinct points per episode (n, M, 3) on a jittered lattice inside the box [low, high] (n, 3).

    Points sit on distinct lattice sites `spacing` apart with jitter of at most spacing / 4, so any two
    are at least spacing / 2 apart: a swarm can be spawned anywhere without overlapping drones.
    """
    m = ctx.drones
    extent = (high - low).min(0).values
    sites = torch.clamp(torch.floor(extent / spacing).long() + 1, min=1)
    total = int(sites.prod())
    if total < m:
        raise ValueError(f"a box of {extent.tolist()} m holds {total} sites {spacing} m apart, fewer than "
                         f"the {m} drones; enlarge the arena or reduce drones_per_swarm")
    pick = torch.rand((n, total), generator=ctx.generator, device=ctx.device).argsort(dim=1)[:, :m]
    sx, sy, sz = sites.tolist()
    ix, iy, iz = pick // (sy * sz), (pick // sz) % sy, pick % sz
    idx = torch.stack((ix, iy, iz), dim=-1).float()
    used = (sites - 1).float() * spacing
    origin = low + (high - low - used) * ctx.uniform(n, 3)
    jitter = ctx.uniform(n, m, 3, low=-0.25 * spacing, high=0.25 * spacing)
    return (origin.unsqueeze(1) + idx * spacing + jitter).clamp(low.unsqueeze(1), high.unsqueeze(1))


def formation_offsets(shape: str, m: int, spacing: torch.Tensor) -> torch.Tensor:
    """Slots (n, M, 3) of a formation centred on the origin, neighbouring slots about `spacing` (n,) apart."""
    device = spacing.device
    i = torch.arange(m, device=device, dtype=torch.float32)
    if shape == "circle":
        radius = spacing / (2.0 * math.sin(math.pi / max(m, 2))) if m > 1 else torch.zeros_like(spacing)
        angle = 2.0 * math.pi * i / m
        unit = torch.stack((torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)), dim=-1)
        return unit * radius.view(-1, 1, 1)
    if shape == "grid":
        cols = math.ceil(math.sqrt(m))
        unit = torch.stack(((i % cols) - (cols - 1) / 2, torch.zeros_like(i),
                            (i // cols) - (math.ceil(m / cols) - 1) / 2), dim=-1)
        return unit * spacing.view(-1, 1, 1)
    if shape == "sphere":
        # Fibonacci sphere; the radius makes the mean nearest-neighbour gap about `spacing`.
        golden = math.pi * (3.0 - math.sqrt(5.0))
        z = 1.0 - 2.0 * (i + 0.5) / m
        r = torch.sqrt(1.0 - z * z)
        unit = torch.stack((r * torch.cos(golden * i), r * torch.sin(golden * i), z), dim=-1)
        radius = spacing * math.sqrt(m / (4.0 * math.pi)) * 1.1 if m > 1 else torch.zeros_like(spacing)
        return unit * radius.view(-1, 1, 1)
    if shape == "cube":
        side = math.ceil(m ** (1.0 / 3.0) - 1e-9)
        unit = torch.stack((i % side, (i // side) % side, i // (side * side)), dim=-1)
        unit = unit - unit.mean(0, keepdim=True)
        return unit * spacing.view(-1, 1, 1)
    raise ValueError(f"unknown formation '{shape}'")


def random_formation(ctx: ScenarioContext, n: int) -> torch.Tensor:
    """Goals (n, M, 3): a formation of a random configured shape, spacing, yaw and place in the arena."""
    cfg = ctx.config
    m = ctx.drones
    spacing = ctx.uniform(n, low=cfg.formation_spacing[0], high=cfg.formation_spacing[1])
    shape_id = ctx.choice(n, len(cfg.formations))
    offsets = torch.zeros(n, m, 3, device=ctx.device)
    for k, shape in enumerate(cfg.formations):  # a loop over shapes, not over environments
        # Each shape for every row, then a choice per row: masked indexing would read the device, and
        # this runs inside the step loop (dynamic formations).
        offsets = torch.where((shape_id == k).view(-1, 1, 1), formation_offsets(shape, m, spacing), offsets)
    yaw = ctx.uniform(n, low=-math.pi, high=math.pi)
    c, s = torch.cos(yaw).view(-1, 1), torch.sin(yaw).view(-1, 1)
    x, y = offsets[..., 0], offsets[..., 1]
    offsets = torch.stack((c * x - s * y, s * x + c * y, offsets[..., 2]), dim=-1)
    slot = torch.rand((n, m), generator=ctx.generator, device=ctx.device).argsort(dim=1)
    return place_in_flight_box(ctx, torch.gather(offsets, 1, slot.unsqueeze(-1).expand(-1, -1, 3)))


def place_in_flight_box(ctx: ScenarioContext, offsets: torch.Tensor) -> torch.Tensor:
    """Positions (n, M, 3) of shapes given as offsets from their centre, at a random place that keeps
    every point inside the flight box; a shape too large for the arena is shrunk to fit."""
    n = offsets.shape[0]
    low, high = ctx.arena.flight_box(ctx.device)
    box_half = 0.5 * (high - low)
    half = offsets.abs().amax(dim=1)                                        # (n, 3)
    shrink = (box_half / half.clamp_min(1e-9)).amin(dim=1).clamp(max=1.0)   # (n,)
    offsets = offsets * shrink.view(-1, 1, 1)
    room = (box_half - half * shrink.unsqueeze(1)).clamp_min(0.0)
    centre = (low + box_half) + room * (2.0 * ctx.uniform(n, 3) - 1.0)
    return centre.unsqueeze(1) + offsets


def spawn(ctx: ScenarioContext, n: int) -> torch.Tensor:
    """Start positions (n, M, 3) spread over the flight box, at least half a metre apart."""
    low, high = ctx.arena.flight_box(ctx.device)
    return lattice_points(ctx, n, low.expand(n, 3), high.expand(n, 3), spacing=1.0)
