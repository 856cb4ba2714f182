"""Collision replay: restart some episodes from a moment shortly before a collision happened.

Collisions are rare once a swarm flies well, so the states that teach avoidance are rare too.
quad-swarm-rl (ICRA 2024) keeps the state from 1.5 s before each collision and restarts new episodes
from it with high probability; without it their collision rate rose from 0.05 to 0.12. Here the whole
environment state is kept (every drone, the obstacle layout, delay lines, counters) in one batched
buffer, so storing and replaying any number of environments is one indexed copy.

Nothing here reads the device during a rollout: each step only records which environments collided
(a device mask), and `flush` stores their pre-collision states once the rollout is over. The buffer's
bookkeeping (which slots hold what, how often each was replayed) lives on the host, so choosing what to
replay at a restart is host arithmetic too.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from nanoswarm.sim import tensor_struct
from nanoswarm.sim.env import Snapshot, StepResult, SwarmEnv, rows_of
from nanoswarm.training.config import ReplayConfig


@dataclass
class PendingCollisions:
    """The environments that collided at one step, and the snapshot their replay would restart from."""

    collided: torch.Tensor       # (E,) bool on the device
    same_episode: np.ndarray     # (E,) bool: still in the episode the snapshot shows
    past: Snapshot


class CollisionReplay:
    """Watches an environment step by step; call `after_step` after every `env.step`, `flush` after a rollout.

    rng: the host's random generator; which restarts replay, and from which slot, is drawn on the host.
    """

    def __init__(self, env: SwarmEnv, cfg: ReplayConfig, rng: np.random.Generator):
        self.env = env
        self.cfg = cfg
        self.rng = rng
        self.interval = max(1, round(cfg.snapshot_every_s * env.config.control_hz))
        self.history: deque[tuple[int, Snapshot]] = deque(maxlen=math.ceil(cfg.rewind_s / cfg.snapshot_every_s) + 1)
        self.all_rows = np.arange(env.num_envs)
        self.replayed = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)  # episode started from the buffer
        self.previous_collisions = torch.zeros(env.num_envs, dtype=torch.int64, device=env.device)
        self.pending: list[PendingCollisions] = []
        self.buffer: Snapshot | None = None   # `capacity` environments
        self.filled = np.zeros(cfg.capacity, dtype=bool)
        self.uses = np.zeros(cfg.capacity, dtype=np.int64)
        self.write_at = 0
        self.steps = 0
        self.active = False   # switched on by the trainer once the drones can fly

    @property
    def size(self) -> int:
        return int(self.filled.sum())

    def after_step(self, result: StepResult) -> None:
        """Note new collisions, replace some of the episodes that just restarted, snapshot."""
        state, clock = self.env.state, self.env.clock
        assert state is not None and clock is not None
        collisions = state.stats.collisions.sum(1)
        if self.active and len(self.history) == self.history.maxlen:
            taken_at, past = self.history[0]
            age = self.steps + 1 - taken_at
            # Only environments still in the episode the snapshot shows (their step counter moved by `age`);
            # an episode that just ended shows its successor's clock, so it drops out here too.
            same_episode = past.clock.steps + age == clock.steps
            self.pending.append(PendingCollisions(collisions > self.previous_collisions, same_episode, past))
        if result.ended.size:
            self.replayed[torch.from_numpy(result.ended).to(self.env.device, non_blocking=True)] = False
            if self.active and self.size:
                self._replay(result.ended)
        self.previous_collisions = state.stats.collisions.sum(1)   # replayed episodes bring their own counts
        self.steps += 1
        if self.steps % self.interval == 0:
            self.history.append((self.steps, self.env.export_envs(self.all_rows)))

    def flush(self) -> None:
        """Store the pre-collision states of the collisions noted since the last flush (reads the device once)."""
        if not self.pending:
            return
        collided = torch.stack([p.collided for p in self.pending]).cpu().numpy()
        for pending, hit in zip(self.pending, collided):
            rows = np.flatnonzero(hit & pending.same_episode)[: self.cfg.capacity]
            if rows.size:
                self.store(rows_of(pending.past, rows))
        self.pending.clear()

    def store(self, part: Snapshot) -> None:
        """Keep the environments of `part` (as `rows_of` gives them) for replay, overwriting the oldest."""
        n = part.observation.shape[0]
        if self.buffer is None:
            self.buffer = rows_of(part, np.zeros(self.cfg.capacity, dtype=np.int64))
        slots = (self.write_at + np.arange(n)) % self.cfg.capacity
        self.write_at = (self.write_at + n) % self.cfg.capacity
        device_slots = torch.from_numpy(slots).to(self.env.device, non_blocking=True)
        tensor_struct.assign(self.buffer.state, device_slots, part.state)
        tensor_struct.assign(self.buffer.clock, slots, part.clock)
        self.buffer.observation[device_slots] = part.observation
        self.filled[slots] = True
        self.uses[slots] = 0

    def _replay(self, restarted: np.ndarray) -> None:
        rows = restarted[self.rng.random(restarted.size) < self.cfg.probability]
        if rows.size == 0:
            return
        pick = self.rng.choice(np.flatnonzero(self.filled), size=rows.size)
        assert self.buffer is not None
        self.env.import_envs(rows, rows_of(self.buffer, pick))
        self.replayed[torch.from_numpy(rows).to(self.env.device, non_blocking=True)] = True
        np.add.at(self.uses, pick, 1)
        self.filled &= self.uses < self.cfg.max_replays
