"""Scenarios with fixed goals: hover, random goals, one shared goal, and swapping places."""

from __future__ import annotations

import torch

from nanoswarm.sim.scenarios.base import EpisodeStart, Scenario, formation_offsets, place_in_flight_box, spawn


class Hover(Scenario):
    """Hold position: each drone starts within 0.1 m per axis of its own goal (starts 0.5 m apart)."""

    name = "hover"

    def start(self, n: int) -> EpisodeStart:
        pos = spawn(self.ctx, n)
        goals = pos + self.ctx.uniform(n, self.ctx.drones, 3, low=-0.1, high=0.1)
        return self._episode(pos, goals)


class RandomGoals(Scenario):
    """Every drone flies to its own random goal; goals at least half a metre apart."""

    name = "random_goals"

    def start(self, n: int) -> EpisodeStart:
        return self._episode(spawn(self.ctx, n), spawn(self.ctx, n))


class SameGoal(Scenario):
    """The whole swarm flies to one goal; success within the larger same-goal radius."""

    name = "same_goal"

    def start(self, n: int) -> EpisodeStart:
        low, high = self.ctx.arena.flight_box(self.ctx.device)
        goal = low + (high - low) * self.ctx.uniform(n, 3)
        goals = goal.unsqueeze(1).expand(n, self.ctx.drones, 3).clone()
        return self._episode(spawn(self.ctx, n), goals, radius=self.ctx.config.same_goal_success_radius)


class SwapGoals(Scenario):
    """Drones start on a circle and each flies to the opposite slot, so all paths cross the middle."""

    name = "swap_goals"

    def start(self, n: int) -> EpisodeStart:
        cfg, m = self.ctx.config, self.ctx.drones
        spacing = self.ctx.uniform(n, low=cfg.formation_spacing[0], high=cfg.formation_spacing[1])
        pos = place_in_flight_box(self.ctx, formation_offsets("circle", m, spacing))
        opposite = (torch.arange(m, device=pos.device) + m // 2) % m
        return self._episode(pos, pos[:, opposite].clone())
