"""Scenario plug-ins: each module defines how episodes start and where the goals are.

To add a scenario, subclass `Scenario` in a module of this package and list it in `SCENARIO_CLASSES`.
"""

from __future__ import annotations

from nanoswarm.sim.scenarios.base import EpisodeStart, Scenario, ScenarioContext
from nanoswarm.sim.scenarios.formation import DynamicFormation, Formation
from nanoswarm.sim.scenarios.goals import Hover, RandomGoals, SameGoal, SwapGoals
from nanoswarm.sim.scenarios.mix import Mix
from nanoswarm.sim.scenarios.obstacles import Obstacles

SCENARIO_CLASSES: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (Hover, RandomGoals, SameGoal, SwapGoals, Formation, DynamicFormation, Obstacles)
}


def make_scenario(ctx: ScenarioContext) -> Scenario:
    """The scenario named by `ctx.config.scenario` ('mix' builds its members from `config.mix`)."""
    name = ctx.config.scenario
    if name == "mix":
        return Mix(ctx, [SCENARIO_CLASSES[member](ctx) for member in ctx.config.mix])
    return SCENARIO_CLASSES[name](ctx)


__all__ = ["EpisodeStart", "Scenario", "ScenarioContext", "SCENARIO_CLASSES", "make_scenario"]
