"""The training step loop never reads the device.

On a GPU every read of a value (`bool(done.any())`, `nonzero`, `.item()`, a copy to the host) stalls
the host until the GPU has finished all queued work, and a step loop with one such read per control step
runs at the speed of its round-trips rather than its kernels.

On the CPU there is no device to wait for, so the first test watches for what *would* be a read: every
torch operation that turns a tensor's value into a Python value or a data-dependent shape. The host's
bookkeeping (episode clocks, replay slots) is numpy, so any such torch operation inside the loop is a
device read. Where CUDA exists, the last test runs the loop under `torch.cuda.set_sync_debug_mode("error")`,
which also catches plain copies to the host.
"""

from __future__ import annotations

import traceback
from collections import Counter
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nanoswarm.sim.env import rows_of
from nanoswarm.training.config import ReplayConfig
from nanoswarm.training.train import Trainer
from conftest import tiny_config

aten = torch.ops.aten
# Operators whose result needs the input's values on the host: a scalar read, or an output shape set by the data.
READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default, aten._unique2.default,
         aten.unique_dim.default, aten.unique_consecutive.default, aten.repeat_interleave.Tensor}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}


class DeviceReads(TorchDispatchMode):
    """Records every torch operation that reads tensor values back to the host, with where it came from.

    host_tensors: tensors that live on the host by design, whose reads cost nothing (Adam's step counts).
    """

    def __init__(self, host_tensors: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self.host_tensors = host_tensors
        self.found: list[str] = []

    def _record(self, what: str) -> None:
        self.found.append(what + "\n" + "".join(traceback.format_stack(limit=6)[:-2]))

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in READS:
            if not any(args[0] is t for t in self.host_tensors):
                self._record(str(func))
        elif func in INDEXING and any(i is not None and i.dtype == torch.bool for i in args[1]):
            self._record(f"{func} with a boolean mask (a nonzero inside)")
        return func(*args, **(kwargs or {}))

    def watching_conversions(self, stack: ExitStack, monkeypatch: pytest.MonkeyPatch) -> None:
        """Also record tensor-to-Python and tensor-to-numpy conversions, which bypass the dispatcher."""
        for name in ("tolist", "numpy", "__array__"):
            original = getattr(torch.Tensor, name)

            def recording(tensor: torch.Tensor, *args: Any, _name: str = name, _original: Any = original,
                          **kwargs: Any) -> Any:
                self._record(f"Tensor.{_name}")
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, recording)
        stack.callback(monkeypatch.undo)


def busy_trainer(device: str = "cpu") -> tuple[Trainer, Counter]:
    """A trainer whose next rollout ends episodes, moves goals and replays collisions, counting each."""
    config = tiny_config()
    config.env.device = device
    config.env.episode_s = 0.06   # 6 steps: every environment ends twice in a 16-step rollout
    config.env.mix = ("swap_goals", "dynamic_formation")
    config.env.goal_switch_s = (0.02, 0.03)
    config.ppo.rollout_steps = 16
    config.replay = ReplayConfig(enabled=True, snapshot_every_s=0.01, rewind_s=0.02, probability=1.0, capacity=8)
    trainer = Trainer(config)
    assert trainer.replay is not None
    trainer.replay.active = True
    trainer.replay.store(rows_of(trainer.env.snapshot(), np.arange(2)))   # something to replay from the start
    counts: Counter = Counter()
    env = trainer.env
    step, next_goals = env.step, env.scenario.next_goals

    def counting_step(action: torch.Tensor) -> Any:
        result = step(action)
        counts["episodes ended"] += result.ended.size
        return result

    def counting_next_goals(goals: torch.Tensor) -> torch.Tensor:
        counts["goal changes"] += goals.shape[0]
        return next_goals(goals)

    env.step = counting_step                      # type: ignore[method-assign]
    env.scenario.next_goals = counting_next_goals  # type: ignore[method-assign]
    return trainer, counts


def test_the_watcher_sees_reads():
    """The check can fail: each kind of read the step loop used to make is caught."""
    x = torch.arange(6.0)
    with DeviceReads() as reads:
        bool((x > 2).any())
        (x > 2).nonzero()
        x[x > 2]
        float(x.sum())
    assert len(reads.found) == 4, reads.found


def test_the_training_step_loop_never_reads_the_device(monkeypatch):
    trainer, counts = busy_trainer()
    reads = DeviceReads()
    loop = trainer._run_rollout

    def watched_loop() -> torch.Tensor:
        with ExitStack() as stack:
            reads.watching_conversions(stack, monkeypatch)
            stack.enter_context(reads)
            return loop()

    monkeypatch.setattr(trainer, "_run_rollout", watched_loop)
    trainer.collect()
    assert not reads.found, "device reads in the step loop:\n" + "\n".join(reads.found[:5])
    # the loop did take every branch that used to read the device
    assert counts["episodes ended"] >= 2 * trainer.env.num_envs and counts["goal changes"] > 0
    assert trainer.replay is not None and int(trainer.replay.uses.sum()) > 0
    assert trainer.env.clock is not None and trainer.env.state is not None
    assert trainer.env.clock.steps.tolist() == trainer.env.state.steps.tolist()


def test_replayed_and_reserved_episodes_need_no_draw_inside_the_loop(monkeypatch):
    """`reserve` before the rollout drew every fresh episode the loop restarts (drawing reads the device)."""
    trainer, _ = busy_trainer()
    draws = []
    start = trainer.env._start_episodes
    monkeypatch.setattr(trainer.env, "_start_episodes", lambda n: draws.append(n) or start(n))
    monkeypatch.setattr(trainer, "_check_rollout", lambda: None)
    trainer.env.reserve(trainer._episodes_needed())
    before = len(draws)
    trainer._run_rollout()
    assert len(draws) == before


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch.cuda.is_available() is False")
def test_the_cuda_step_loop_never_synchronizes(monkeypatch):
    trainer, counts = busy_trainer("cuda")
    trainer.collect()                 # the first rollout warms up caches and the allocator
    loop = trainer._run_rollout

    def strict_loop() -> torch.Tensor:
        torch.cuda.set_sync_debug_mode("error")
        try:
            return loop()
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(trainer, "_run_rollout", strict_loop)
    trainer.collect()
    assert counts["episodes ended"] > 0 and counts["goal changes"] > 0


def reads_of_one_update(epochs: int, minibatches: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    trainer, _ = busy_trainer()
    trainer.config.ppo.epochs, trainer.config.ppo.minibatches = epochs, minibatches
    trainer.collect()
    trainer.update()   # creates Adam's state; its step counts stay on the host (unless `capturable`), also on a GPU
    trainer.collect()
    reads = DeviceReads(tuple(state["step"] for state in trainer.optimizer.state.values()))
    with ExitStack() as stack:
        reads.watching_conversions(stack, monkeypatch)
        stack.enter_context(reads)
        trainer.update()
    return reads.found


def test_a_ppo_update_reads_the_device_a_fixed_number_of_times(monkeypatch):
    """The diagnostics and the finite check are read once per update, not once per minibatch."""
    few = reads_of_one_update(1, 2, monkeypatch)
    many = reads_of_one_update(3, 4, monkeypatch)
    assert len(many) == len(few) <= 3, "\n".join(many)
