"""A per-episode draw over other scenarios, so one policy learns them all."""

from __future__ import annotations

import torch

from nanoswarm.sim.scenarios.base import EpisodeStart, Scenario, ScenarioContext


class Mix(Scenario):
    """Each episode picks one of `config.mix` uniformly; obstacles are never part of the mix."""

    name = "mix"

    def __init__(self, ctx: ScenarioContext, members: list[Scenario]):
        super().__init__(ctx)
        self.members = members

    def start(self, n: int) -> EpisodeStart:
        pick = self.ctx.choice(n, len(self.members))
        m = self.ctx.drones
        dev = self.ctx.device
        out = EpisodeStart(pos=torch.empty(n, m, 3, device=dev), goals=torch.empty(n, m, 3, device=dev),
                           success_radius=torch.empty(n, device=dev), goal_period=torch.empty(n, device=dev))
        for k, member in enumerate(self.members):  # a loop over scenarios, not over environments
            rows = (pick == k).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            part = member.start(rows.numel())
            out.pos[rows], out.goals[rows] = part.pos, part.goals
            out.success_radius[rows], out.goal_period[rows] = part.success_radius, part.goal_period
        return out

    def next_goals(self, goals: torch.Tensor) -> torch.Tensor:
        """Only dynamic members give episodes a finite goal period, so the due episodes are theirs."""
        dynamic = [s for s in self.members if type(s).next_goals is not Scenario.next_goals]
        return dynamic[0].next_goals(goals) if dynamic else goals
