"""Swarm policies: the attention-based decentralized actor, deep-sets and MLP baselines, the critic and
running observation normalisation (see `policy.SwarmPolicy`)."""

from nanoswarm.policies.config import PolicyConfig
from nanoswarm.policies.layers import count_parameters
from nanoswarm.policies.policy import ActionSample, SwarmPolicy

__all__ = ["PolicyConfig", "SwarmPolicy", "ActionSample", "count_parameters"]
