"""Sizes and kinds of the policy networks: configuration, never literals in the model code."""

from __future__ import annotations

from dataclasses import dataclass

from nanoswarm.config import require

ACTOR_KINDS = ("attention", "deepsets", "mlp")
ACTIVATIONS = ("tanh", "relu", "elu")


@dataclass
class PolicyConfig:
    """The actor (what flies) and the critic (training only).

    `hidden` is the width of every encoder and of the attention; `head` the hidden layers after them.
    """

    actor: str = "attention"
    hidden: int = 32
    head: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = -2.3         # initial exploration: std 0.1 of the Gaussian over motor commands
    min_log_std: float = -4.0
    critic: str = "swarm_attention"    # 'swarm_attention' sees every drone of the swarm; 'local' only its own
    critic_hidden: int = 64

    def validate(self) -> None:
        require(self.actor in ACTOR_KINDS, "actor", f"unknown actor '{self.actor}'; choose one of {list(ACTOR_KINDS)}")
        require(self.activation in ACTIVATIONS, "activation",
                f"unknown activation '{self.activation}'; choose one of {list(ACTIVATIONS)}")
        require(self.hidden >= 1 and self.critic_hidden >= 1, "hidden", "widths must be at least 1")
        require(all(h >= 1 for h in self.head), "head", "layer widths must be at least 1")
        require(self.critic in ("swarm_attention", "local"), "critic", "choose 'swarm_attention' or 'local'")
        require(self.min_log_std < self.init_log_std, "init_log_std", "must exceed min_log_std")
