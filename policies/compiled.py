"""torch.compile for functions of the policy networks (the PPO loss, the imitation loss, the rollout's
forward pass), with the one inductor setting they share."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

Fn = TypeVar("Fn", bound=Callable)

# Inductor's CPU kernels compute tanh with Sleef by default; as 2 / (1 + exp(-2x)) - 1 it took 4.5 ms
# instead of 10.1 ms over a 98,304 x 32 activation on one core of the 2-core machine, within 2e-7 of
# torch.tanh (BENCHMARKS.md, training throughput). tanh is every hidden activation of the networks.
# Inductor keeps the Sleef default for outputs that feed functions like atan2, where the absolute error
# near zero matters (pytorch#148241); an activation is not one of those.
POLICY_INDUCTOR_OPTIONS = {"cpp.use_decompose_tanh": True}


def compile_policy_function(fn: Fn) -> Fn:
    """`fn` through torch.compile with static shapes and `POLICY_INDUCTOR_OPTIONS`."""
    return torch.compile(fn, dynamic=False, options=POLICY_INDUCTOR_OPTIONS)
