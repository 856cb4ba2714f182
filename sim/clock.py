"""The host's copy of every environment's episode clock, so a GPU step loop never waits to read it.

Whether an episode ends or its goals move at a step depends only on counters: episodes have a fixed
length, and the goal period of a dynamic scenario is drawn when the episode starts. Keeping those
counters on the CPU lets the environment decide which rows to reset or re-goal with host arithmetic;
reading them from the device instead (`done.any()`, `done.nonzero()`) would stall the host on the GPU
every control step, which caps a GPU simulator far below what its kernels allow. The device keeps its own
step counter for the step's arithmetic (grace period, metrics); both advance together.

The counters are numpy arrays, not CPU tensors, so that host and device work stay apart by type: any
torch operation that reads a value in the step loop is a device read (the test of the step loop relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NEVER = 2**62  # a goal period, in steps, that no episode reaches


@dataclass
class EpisodeClock:
    """Per-environment counters, int64 arrays (E,)."""

    steps: np.ndarray             # control steps since the episode started
    next_goal_change: np.ndarray  # control step of the episode at which the goals next change
    goal_period: np.ndarray       # control steps between goal changes, NEVER for fixed goals

    @staticmethod
    def start(goal_period_s: torch.Tensor, control_dt: float) -> "EpisodeClock":
        """Clocks of new episodes whose goals change every `goal_period_s` seconds (inf: never); reads the device."""
        period_s = goal_period_s.cpu().double().numpy()
        fixed = np.isinf(period_s)
        steps = np.maximum(np.round(np.where(fixed, 0.0, period_s) / control_dt), 1.0).astype(np.int64)
        period = np.where(fixed, NEVER, steps)
        return EpisodeClock(steps=np.zeros_like(period), next_goal_change=period.copy(), goal_period=period)

    def ending(self, episode_steps: int) -> np.ndarray:
        """Mask (E,) of the episodes that have reached their time limit."""
        return self.steps >= episode_steps

    def goals_due(self, episode_steps: int) -> np.ndarray:
        """Mask (E,) of the episodes whose goals change with the coming step (those ending with it restart)."""
        coming = self.steps + 1
        return (coming >= self.next_goal_change) & (coming < episode_steps)

    def ends_within(self, steps: int, episode_steps: int) -> int:
        """How many episodes reach their time limit in the next `steps` steps, counting the ones that
        start meanwhile (each lasts `episode_steps`; an imported state restarting part-way is not foreseen)."""
        remaining = episode_steps - self.steps
        ends = np.where(remaining <= steps, 1 + (steps - remaining) // episode_steps, 0)
        return int(ends.sum())
