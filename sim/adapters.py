"""Gymnasium and PettingZoo front ends over the batched swarm simulator.

`SwarmEnv` speaks torch tensors shaped (envs, drones, ...) and resets finished episodes inside `step`,
which is what fast training wants. Users of the Gymnasium and PettingZoo ecosystems (their wrappers,
checkers and training libraries) expect those projects' standard APIs instead: numpy arrays, the
five-tuple `step`, seeding through `reset(seed=...)`, per-agent dictionaries. These adapters give them that
API over the very same batched core, so there is one simulator and no second implementation to drift:

- `SwarmGymEnv`: one swarm as one `gymnasium.Env`; the observation is the whole swarm (M, obs).
- `SwarmVectorEnv`: E swarms as one `gymnasium.vector.VectorEnv`, stepped in one batched call
  (same-step autoreset, as the core does it).
- `SwarmParallelEnv`: one swarm as a `pettingzoo.ParallelEnv` with one agent per drone.

Episodes end only by their time limit, so `terminated` is always False and `truncated` marks the end.
Per-drone rewards are in `info["drone_rewards"]`; the episode's metrics (floats, averaged over the swarm)
in `info["episode_metrics"]` at the truncation step. The key is not "episode", which Gymnasium's
`RecordEpisodeStatistics` wrapper writes and refuses to find already present.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from pettingzoo import ParallelEnv

from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.env import SwarmEnv

__all__ = ["SwarmGymEnv", "SwarmVectorEnv", "SwarmParallelEnv"]


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy copy of `t`: the core reuses and edits its tensors in place, callers keep what we return."""
    return np.array(t.detach().cpu().numpy(), copy=True)


def _make_config(config: EnvConfig | None, overrides: dict[str, Any], num_envs: int | None) -> EnvConfig:
    """Copy `config` (default: EnvConfig()) with `overrides`, forcing `num_envs` when given."""
    config = dataclasses.replace(config if config is not None else EnvConfig(), **overrides)
    if num_envs is not None:
        config = dataclasses.replace(config, num_envs=num_envs)
    return config


def _spaces(core: SwarmEnv) -> tuple[spaces.Box, spaces.Box]:
    """One swarm's observation space (M, obs), unbounded, and action space (M, 4) in [-1, 1]."""
    m = core.drones
    obs = spaces.Box(-np.inf, np.inf, shape=(m, core.obs_size), dtype=np.float32)
    act = spaces.Box(-1.0, 1.0, shape=(m, 4), dtype=np.float32)
    return obs, act


def _as_action(action: Any, core: SwarmEnv) -> torch.Tensor:
    """Actions from numpy (or anything array-like) as a float32 tensor on the core's device."""
    return torch.as_tensor(np.asarray(action, dtype=np.float32), device=core.device)


class SwarmGymEnv(gymnasium.Env):
    """One swarm of M drones as a single Gymnasium environment.

    The observation is the swarm's stacked per-drone observations (M, obs) and the action the stacked
    motor commands (M, 4); the reward is the mean over drones. The core resets a finished episode in
    the same step; to keep Gymnasium's semantics (the last observation of an episode comes with
    `truncated=True`, the first of the next from `reset()`), the truncation step returns the final
    observation and keeps the core's fresh one for the next unseeded `reset()`.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, **overrides: Any):
        if overrides.get("num_envs", 1) != 1:
            raise ValueError("SwarmGymEnv holds one swarm (num_envs=1); use SwarmVectorEnv for several")
        overrides.pop("num_envs", None)
        self.core = SwarmEnv(_make_config(config, overrides, num_envs=1))
        self.observation_space, self.action_space = _spaces(self.core)
        self._pending_reset: np.ndarray | None = None  # the core's fresh observation after a truncation

    @property
    def config(self) -> EnvConfig:
        return self.core.config

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: with a seed, reseed the core and restart deterministically; without one,
        hand out the episode the core already started at the last truncation (or start a new one)."""
        super().reset(seed=seed)
        pending, self._pending_reset = self._pending_reset, None
        if seed is None and pending is not None:
            return pending, {}
        return _numpy(self.core.reset(seed=seed)[0]), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one control step. Stepping on after a truncation without `reset()` continues in the
        episode the core already started (whose first observation the caller then never saw)."""
        if self.core.state is None:
            raise RuntimeError("call reset() before step()")
        self._pending_reset = None
        res = self.core.step(_as_action(action, self.core).unsqueeze(0))
        rewards = _numpy(res.reward[0])
        info: dict[str, Any] = {"drone_rewards": rewards}
        truncated = bool(res.done[0])
        if truncated:
            self._pending_reset = _numpy(res.observation[0])
            obs = _numpy(res.info["final_observation"][0])
            info["episode_metrics"] = {k: float(v[0]) for k, v in res.info["episode"].items()}
        else:
            obs = _numpy(res.observation[0])
        return obs, float(rewards.mean()), False, truncated, info


class SwarmVectorEnv(VectorEnv):
    """E swarms as one Gymnasium vector environment, stepped in one batched call of the core.

    Observations (E, M, obs), actions (E, M, 4), rewards (E,) as the mean over each swarm's drones.
    Autoreset is `SAME_STEP`, as the core does it: the observation of a truncated swarm is already the
    first of its next episode, and the last one of the old episode is in `info["final_obs"]` (an
    object array, None where no episode ended) with the mask `info["_final_obs"]`, and the episode
    metrics in `info["final_info"]["episode_metrics"]`, following Gymnasium's vector info layout.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, config: EnvConfig | None = None, **overrides: Any):
        self.core = SwarmEnv(_make_config(config, overrides, num_envs=None))
        self.num_envs = self.core.num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.core)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    @property
    def config(self) -> EnvConfig:
        return self.core.config

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Restart every swarm. The core has one random stream for all swarms, so `seed` is one int
        (a list of per-swarm seeds, as some vector envs take, cannot be honoured and is refused)."""
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or None (one stream drives all swarms), got {seed!r}")
        super().reset(seed=seed)
        return _numpy(self.core.reset(seed=None if seed is None else int(seed))), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.core.state is None:
            raise RuntimeError("call reset() before step()")
        res = self.core.step(_as_action(actions, self.core))
        n = self.num_envs
        truncated = _numpy(res.done).astype(np.bool_)
        drone_rewards = _numpy(res.reward)
        info: dict[str, Any] = {"drone_rewards": drone_rewards, "_drone_rewards": np.ones(n, dtype=np.bool_)}
        if truncated.any():
            rows = _numpy(res.info["done_envs"])
            final = _numpy(res.info["final_observation"])
            final_obs = np.full(n, None, dtype=object)
            for j, row in enumerate(rows):  # an object array is Gymnasium's format; only finished rows
                final_obs[row] = final[j]
            metrics: dict[str, Any] = {}
            for name, values in res.info["episode"].items():
                column = np.zeros(n, dtype=np.float64)
                column[rows] = _numpy(values)
                metrics[name], metrics[f"_{name}"] = column, truncated.copy()
            info.update(final_obs=final_obs, _final_obs=truncated.copy(),
                        final_info={"episode_metrics": metrics, "_episode_metrics": truncated.copy()},
                        _final_info=truncated.copy())
        rewards = drone_rewards.mean(axis=1).astype(np.float64)
        return _numpy(res.observation), rewards, np.zeros(n, dtype=np.bool_), truncated, info


class SwarmParallelEnv(ParallelEnv):
    """One swarm as a PettingZoo parallel environment: agent "drone_i" is drone i of the swarm.

    Each agent observes its own row (obs,) and sends its own motor commands (4,); rewards are per
    drone. All agents truncate together at the time limit, after which `agents` is empty until
    `reset()`. Built on `SwarmGymEnv`, so seeding and the episode boundary behave the same.
    """

    metadata = {"name": "nanoswarm_v0", "render_modes": []}

    def __init__(self, config: EnvConfig | None = None, **overrides: Any):
        self.swarm = SwarmGymEnv(config, **overrides)
        m, size = self.swarm.observation_space.shape
        self.possible_agents = [f"drone_{i}" for i in range(m)]
        self.agents: list[str] = []
        self.render_mode = None
        # One Box object per agent, built once: PettingZoo requires the same object on every call
        # (seeding an agent's action space must stick).
        self._observation_spaces = {a: spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
                                    for a in self.possible_agents}
        self._action_spaces = {a: spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
                               for a in self.possible_agents}

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self._action_spaces[agent]

    def _split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {agent: rows[i].copy() for i, agent in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        obs, _ = self.swarm.reset(seed=seed, options=options)
        self.agents = self.possible_agents[:]
        return self._split(obs), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool],
                                                     dict[str, bool], dict[str, dict[str, Any]]]:
        """Step with one action per live agent; every drone must act (the physics moves them all)."""
        if not self.agents:
            raise RuntimeError("no live agents: the episode was truncated, call reset()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise KeyError(f"actions missing for agents {missing}")
        joint = np.stack([np.asarray(actions[a], dtype=np.float32) for a in self.possible_agents])
        obs, _, _, truncated, info = self.swarm.step(joint)
        rewards = {a: float(info["drone_rewards"][i]) for i, a in enumerate(self.possible_agents)}
        infos: dict[str, dict[str, Any]] = {a: {} for a in self.possible_agents}
        if truncated:
            for a in self.possible_agents:
                infos[a]["episode_metrics"] = dict(info["episode_metrics"])
        terminations = dict.fromkeys(self.possible_agents, False)
        truncations = dict.fromkeys(self.possible_agents, truncated)
        if truncated:
            self.agents = []
        return self._split(obs), rewards, terminations, truncations, infos
