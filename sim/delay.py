"""A ring buffer that delays a batched signal by a per-row number of steps.

One mechanism serves both latencies the simulator models: the action latency of each drone (domain
randomised, in physics steps) and the observation latency (in control steps). Rows are the leading axes
of the signal, for example (E, M); the history is kept as the last-but-one axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DelayLine:
    """History (..., L+1, D) of a signal and the delay (...,) in steps applied to each row."""

    history: torch.Tensor
    delay: torch.Tensor  # int64, 0 <= delay <= L

    @staticmethod
    def filled(value: torch.Tensor, delay: torch.Tensor, capacity: int) -> "DelayLine":
        """A line whose whole history holds `value` (..., D); capacity is the largest delay L."""
        history = value.unsqueeze(-2).expand(*value.shape[:-1], capacity + 1, value.shape[-1]).clone()
        return DelayLine(history=history, delay=delay.clone())

    def push(self, value: torch.Tensor) -> torch.Tensor:
        """Append `value` (..., D) and return, for every row, the value from `delay` steps ago."""
        if self.history.shape[-2] == 1:
            self.history = value.unsqueeze(-2)
            return value
        self.history = torch.cat((self.history[..., 1:, :], value.unsqueeze(-2)), dim=-2)
        newest = self.history.shape[-2] - 1
        index = (newest - self.delay).view(*self.delay.shape, 1, 1).expand(*self.delay.shape, 1, value.shape[-1])
        return torch.gather(self.history, -2, index).squeeze(-2)
