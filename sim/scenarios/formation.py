"""Formation scenarios: fly into a formation, or follow formations that change every few seconds."""

from __future__ import annotations

import torch

from nanoswarm.sim.scenarios.base import EpisodeStart, Scenario, random_formation, spawn


class Formation(Scenario):
    """Fly from scattered starts into a circle, grid, sphere or cube at a random place and spacing."""

    name = "formation"

    def start(self, n: int) -> EpisodeStart:
        return self._episode(spawn(self.ctx, n), random_formation(self.ctx, n))


class DynamicFormation(Formation):
    """A new formation (shape, place, spacing) every `goal_switch_s` seconds."""

    name = "dynamic_formation"

    def start(self, n: int) -> EpisodeStart:
        episode = super().start(n)
        low, high = self.ctx.config.goal_switch_s
        episode.goal_period = self.ctx.uniform(n, low=low, high=high)
        return episode

    def next_goals(self, goals: torch.Tensor) -> torch.Tensor:
        return random_formation(self.ctx, goals.shape[0])
