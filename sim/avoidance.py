"""Reactive collision avoidance from what one drone observes: its K nearest neighbours and the column
distance grid around it.

It turns the position loop's velocity into one that keeps clear of neighbours and columns, so that the
geometric controller, which only flies to its goal, becomes an expert that flies a swarm: the kickstart's
teacher for policies that must avoid each other. It reads nothing a drone's observation does not hold, so
a decentralised student can imitate it exactly.

Three terms, each a velocity added to the goal velocity:
- **neighbours, predicted**: for each neighbour, the closest approach within `horizon_s` if both keep their
  velocities; a closing pair predicted to pass closer than `safe_distance` is pushed apart, in proportion
  to how fast it closes, along the line of closest approach and, by a right-hand rule, sideways. Both
  drones of a head-on pair see the rule mirrored, so they pass each other instead of stopping nose to nose
  (the deadlock of pure repulsion);
- **neighbours, present**: a repulsion that grows as a neighbour comes within `safe_distance` now; it
  also keeps drones that share a goal apart;
- **columns**: the distance grid's gradient is the direction away from the nearest column surface. The
  speed towards a column is capped by the gap left (closer than `column_stop` it turns into a push out),
  and inside `column_margin` a slide round the column is added, to the side the drone moves to (and,
  less, the side its goal lies on).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoswarm.config import require
from nanoswarm.sim.obstacles import CENTRE_POINT, GRID_OFFSETS, GRID_SPACING


@dataclass(frozen=True)
class AvoidanceGains:
    """Distances in metres, speeds in m/s. The defaults were tuned on the swarm8 mix and the 20 % column
    benchmark with the geometric controller flying (see BENCHMARKS.md, the avoiding expert)."""

    safe_distance: float = 0.6      # centre distance below which neighbours push each other apart
    contact_distance: float = 0.15  # centre distance at which the push is strongest
    horizon_s: float = 1.0          # how far ahead closest approaches are predicted
    dodge_speed: float = 1.2        # m/s at full danger, along the line of closest approach
    side_speed: float = 0.6         # m/s at full danger, sideways (right-hand rule)
    repel_speed: float = 1.0        # m/s at contact, away from the neighbour's present position
    column_margin: float = 0.4      # surface distance below which drones slide round a column
    column_stop: float = 0.12       # surface distance (centre to surface) at which the speed towards it is 0
    column_braking: float = 2.0     # 1/s: the speed allowed towards a column per metre of gap beyond column_stop
    brake_lead_s: float = 0.5       # s, how far ahead the gap to a column is judged (the velocity loop's lag)
    goal_preference: float = 0.3    # m/s: weight of the goal's side against the present motion's
    slide_speed: float = 0.8        # m/s round a column, at column_stop
    max_speed: float = 1.5          # the avoiding velocity is saturated here

    def validate(self) -> None:
        require(0 <= self.contact_distance < self.safe_distance, "safe_distance",
                "must exceed contact_distance (both metres, contact_distance >= 0)")
        require(0 <= self.column_stop < self.column_margin, "column_margin",
                "must exceed column_stop (both metres, column_stop >= 0)")
        require(self.horizon_s > 0 and self.brake_lead_s >= 0 and self.column_braking > 0, "horizon_s",
                "horizon_s and column_braking must be positive, brake_lead_s not negative")
        require(min(self.dodge_speed, self.side_speed, self.repel_speed, self.slide_speed, self.goal_preference) >= 0
                and self.dodge_speed > 0 and self.max_speed > 0, "dodge_speed",
                "speeds must not be negative; dodge_speed and max_speed must be positive")


_UP = (0.0, 0.0, 1.0)


def _index(dx: int, dy: int) -> int:
    return GRID_OFFSETS.index((dx * GRID_SPACING, dy * GRID_SPACING))


def _unit(v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(eps)


def _ramp(distance: torch.Tensor, far: float, near: float) -> torch.Tensor:
    """0 at `far` and beyond, 1 at `near` and closer, linear between."""
    return ((far - distance) / (far - near)).clamp(0.0, 1.0)


def neighbour_avoidance(rel_pos: torch.Tensor, rel_vel: torch.Tensor, gains: AvoidanceGains) -> torch.Tensor:
    """Velocity (..., 3) away from neighbours at `rel_pos`, `rel_vel` (..., K, 3), world frame."""
    up = rel_pos.new_tensor(_UP)
    closing = -(rel_pos * rel_vel).sum(-1, keepdim=True)
    t_closest = (closing / rel_vel.square().sum(-1, keepdim=True).clamp_min(1e-6)).clamp(0.0, gains.horizon_s)
    closest = rel_pos + rel_vel * t_closest
    # Only pairs that close in dodge, in proportion to how fast: a pair resting close together (a shared
    # goal) would otherwise be sent round each other for ever by the sideways rule.
    closing_speed = closing / torch.linalg.vector_norm(rel_pos, dim=-1, keepdim=True).clamp_min(1e-6)
    danger = (_ramp(torch.linalg.vector_norm(closest, dim=-1, keepdim=True), gains.safe_distance,
                    gains.contact_distance)
              * (1.0 - t_closest / gains.horizon_s) * (closing_speed / gains.dodge_speed).clamp(0.0, 1.0))
    # A pair flying exactly at each other has no line of closest approach: back off along the present one.
    head_on = torch.linalg.vector_norm(closest, dim=-1, keepdim=True) < 0.01
    away = -_unit(torch.where(head_on, rel_pos, closest))
    # Right-hand rule: pass a neighbour with it on the left. Mirrored for the neighbour, so the pair parts.
    side = _unit(torch.linalg.cross(rel_pos, up.expand_as(rel_pos)))
    predicted = danger * (gains.dodge_speed * away + gains.side_speed * side)
    present = gains.repel_speed * _ramp(torch.linalg.vector_norm(rel_pos, dim=-1, keepdim=True),
                                        gains.safe_distance, gains.contact_distance) * -_unit(rel_pos)
    return (predicted + present).sum(-2)


def column_avoidance(desired: torch.Tensor, vel: torch.Tensor, to_goal: torch.Tensor, grid: torch.Tensor,
                     gains: AvoidanceGains) -> torch.Tensor:
    """The `desired` velocity (..., 3) changed to keep clear of the columns the distance `grid` (..., 9)
    senses, for a drone flying at `vel` (..., 3).

    Columns are vertical, so only the horizontal part changes. The grid's central differences give the
    outward normal; a grid clipped at the sensing range has no gradient and changes nothing.
    - The speed towards a column is capped in proportion to the gap it will have `brake_lead_s` from now
      at its present speed: the velocity loop lags by about that much, and a cap computed from the present
      gap came too late (drones that were told to stop still hit columns at 0.6 m/s).
    - Inside `column_margin` a drone slides round the column, on the side its present motion (and, less, its
      goal) lies: a rule on the goal alone flips sides as the drone moves, and the drone chattered into
      the column between the two.
    """
    centre = grid[..., CENTRE_POINT].unsqueeze(-1)
    gradient = torch.stack((grid[..., _index(1, 0)] - grid[..., _index(-1, 0)],
                            grid[..., _index(0, 1)] - grid[..., _index(0, -1)]), dim=-1)
    sensed = torch.linalg.vector_norm(gradient, dim=-1, keepdim=True) > 1e-4
    normal = _unit(gradient)
    horizontal = desired[..., :2]
    approach = -(vel[..., :2] * normal).sum(-1, keepdim=True)
    gap = centre - gains.brake_lead_s * approach.clamp_min(0.0)
    allowed = gains.column_braking * (gap - gains.column_stop)
    towards = -(horizontal * normal).sum(-1, keepdim=True)
    excess = torch.where(sensed, (towards - allowed).clamp_min(0.0), 0.0)
    tangent = torch.stack((normal[..., 1], -normal[..., 0]), dim=-1)  # the normal turned clockwise
    preference = vel[..., :2] + gains.goal_preference * _unit(to_goal[..., :2])
    side = torch.where((preference * tangent).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    closeness = _ramp(centre, gains.column_margin, gains.column_stop) * sensed
    avoided = horizontal + excess * normal + closeness * gains.slide_speed * side * tangent
    return torch.cat((avoided, desired[..., 2:]), dim=-1)


def avoiding_velocity(goal_velocity: torch.Tensor, vel: torch.Tensor, to_goal: torch.Tensor, rel_pos: torch.Tensor,
                      rel_vel: torch.Tensor, grid: torch.Tensor, gains: AvoidanceGains = AvoidanceGains()
                      ) -> torch.Tensor:
    """The goal velocity (..., 3) of a drone flying at `vel` (..., 3), with neighbours (..., K, 3) and
    columns (grid (..., 9)) avoided, saturated at `gains.max_speed`."""
    velocity = goal_velocity + neighbour_avoidance(rel_pos, rel_vel, gains)
    velocity = column_avoidance(velocity, vel, to_goal, grid, gains)
    speed = torch.linalg.vector_norm(velocity, dim=-1, keepdim=True)
    return velocity * (gains.max_speed / speed.clamp_min(gains.max_speed))
