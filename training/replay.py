"""Collision replay: restart some episodes from a moment shortly before a collision happened.

Collisions are rare once a swarm flies well, so the states that teach avoidance are rare too.
quad-swarm-rl (ICRA 2024) keeps the state from 1.5 s before each collision and restarts new episodes
from it with high probability; without it their collision rate rose from 0.05 to 0.12. Here the whole
environment state is kept (every drone, the obstacle layout, delay lines, counters) in one batched
buffer, so storing and replaying any number of environments is one indexed copy.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque

import torch

from nanoswarm.sim import tensor_struct
from nanoswarm.sim.env import Snapshot, StepResult, SwarmEnv
from nanoswarm.training.config import ReplayConfig


class CollisionReplay:
    """Watches an environment step by step; call `after_step` after every `env.step`."""

    def __init__(self, env: SwarmEnv, cfg: ReplayConfig, generator: torch.Generator):
        self.env = env
        self.cfg = cfg
        self.generator = generator
        self.interval = max(1, round(cfg.snapshot_every_s * env.config.control_hz))
        self.history: deque[tuple[int, Snapshot]] = deque(maxlen=math.ceil(cfg.rewind_s / cfg.snapshot_every_s) + 1)
        self.all_rows = torch.arange(env.num_envs, device=env.device)
        dev = env.device
        self.replayed = torch.zeros(env.num_envs, dtype=torch.bool, device=dev)  # episode started from the buffer
        self.previous_collisions = torch.zeros(env.num_envs, dtype=torch.int64, device=dev)
        self.buffer: Snapshot | None = None   # `capacity` environments
        self.filled = torch.zeros(cfg.capacity, dtype=torch.bool, device=dev)
        self.uses = torch.zeros(cfg.capacity, dtype=torch.int64, device=dev)
        self.write_at = 0
        self.steps = 0
        self.active = False   # switched on by the trainer once the drones can fly

    @property
    def size(self) -> int:
        return int(self.filled.sum())

    def after_step(self, result: StepResult) -> None:
        """Store pre-collision states, replace some of the episodes that just restarted, snapshot."""
        state = self.env.state
        assert state is not None
        collisions = state.stats.collisions.sum(1)
        if self.active:
            self._store_collisions(collisions > self.previous_collisions, result.done)
        restarted = result.done.nonzero().squeeze(1)
        if restarted.numel():
            self.replayed[restarted] = False
            if self.active and self.size:
                self._replay(restarted)
        self.previous_collisions = state.stats.collisions.sum(1)
        self.steps += 1
        if self.steps % self.interval == 0:
            self.history.append((self.steps, self.env.export_envs(self.all_rows)))

    def _store_collisions(self, new_collision: torch.Tensor, done: torch.Tensor) -> None:
        if len(self.history) < self.history.maxlen or not bool(new_collision.any()):
            return
        taken_at, past = self.history[0]
        age = self.steps + 1 - taken_at
        state = self.env.state
        assert state is not None
        # Only environments still in the episode the snapshot shows (their step counter moved by `age`).
        rows = (new_collision & ~done & (past.state.steps + age == state.steps)).nonzero().squeeze(1)
        rows = rows[: self.cfg.capacity]
        if rows.numel() == 0:
            return
        if self.buffer is None:
            self.buffer = rows_of(past, torch.zeros(self.cfg.capacity, dtype=torch.int64, device=rows.device))
        slots = (self.write_at + torch.arange(rows.numel(), device=rows.device)) % self.cfg.capacity
        self.write_at = (self.write_at + rows.numel()) % self.cfg.capacity
        part = rows_of(past, rows)
        tensor_struct.assign(self.buffer.state, slots, part.state)
        self.buffer.observation[slots] = part.observation
        self.filled[slots] = True
        self.uses[slots] = 0

    def _replay(self, restarted: torch.Tensor) -> None:
        chosen = torch.rand(restarted.numel(), generator=self.generator, device=restarted.device) < self.cfg.probability
        rows = restarted[chosen]
        if rows.numel() == 0:
            return
        candidates = self.filled.nonzero().squeeze(1)
        pick = candidates[torch.randint(candidates.numel(), (rows.numel(),), generator=self.generator,
                                        device=rows.device)]
        assert self.buffer is not None
        self.env.import_envs(rows, rows_of(self.buffer, pick))
        self.replayed[rows] = True
        self.uses.index_add_(0, pick, torch.ones_like(pick))
        self.filled &= self.uses < self.cfg.max_replays


def rows_of(snapshot: Snapshot, rows: torch.Tensor) -> Snapshot:
    """The environments `rows` of a snapshot (state and observation; the RNG states stay shared)."""
    return dataclasses.replace(snapshot, state=tensor_struct.select(snapshot.state, rows),
                               observation=snapshot.observation[rows])
