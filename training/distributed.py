"""Data-parallel training on `torch.distributed`: what every rank must agree on, and nothing else.

Each rank simulates its own environments with its own seed and computes gradients on its own share of
the batch; the ranks then average gradients (one all-reduce per minibatch), standardise advantages with
statistics of the whole minibatch, and merge normalisation statistics, so every rank holds bit-identical
parameters after every optimizer step and one update of W ranks is one update over their combined batch.
Rank 0 alone logs, evaluates and writes checkpoints.

`Ranks` is the one object the trainer talks to; a single process uses `SINGLE`, whose operations are
identities, so the training loop has no branches for the distributed case. Processes are started by
`torchrun` (or `nanoswarm train --nproc N`, which calls it); the backend is gloo on CPU and NCCL on CUDA.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist

from nanoswarm.policies.normalization import batch_moments

MomentsFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, float]]

RANK_SEED_STRIDE = 100_003  # seeds of rank r are the run's seed + r * stride: rank 0 is the single-process run


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, and the collectives they share."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    collective_device: str = "cpu"   # where small tensors of collectives live: NCCL reduces only CUDA tensors

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's seed for a run seeded `seed`, so ranks draw different episodes and actions."""
        return seed + RANK_SEED_STRIDE * self.rank

    def device(self, configured: str) -> str:
        """The device this rank trains on: with several ranks on CUDA, the GPU of its local rank."""
        if self.distributed and configured.startswith("cuda"):
            return f"cuda:{self.local_rank}"
        return configured

    # ----------------------------------------------------------------------------------- collectives
    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (a new tensor; the input is left alone)."""
        total = values.clone()
        if self.distributed:
            dist.all_reduce(total)
        return total

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over ranks, in one all-reduce of a flat buffer.

        Every rank runs the same code, so the same parameters have gradients on every rank.
        """
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def _pooled(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Count, sum and sum of squares per feature of the rows of `flat` (N, F) over all ranks, each (F,),
        in one all-reduce; they stay on the device."""
        count = torch.full((1, flat.shape[1]), float(flat.shape[0]), dtype=flat.dtype, device=flat.device)
        n, total, squares = self.sum(torch.cat([count, flat.sum(0, keepdim=True), flat.square().sum(0, keepdim=True)]))
        return n, total, squares

    def moments(self, x: torch.Tensor, local: MomentsFn = batch_moments) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Mean and (biased) variance per feature of the rows of `x` (..., F) on all ranks, and their count.

        Ranks pool count, sum and sum of squares in float64; a single process computes mean and
        variance directly, with `local` (the trainer passes a compiled `batch_moments`).
        """
        if not self.distributed:
            return local(x)
        n, total, squares = self._pooled(x.reshape(-1, x.shape[-1]).to(torch.float64))
        mean = total / n
        return mean, (squares / n - mean.square()).clamp_min(0.0), float(n[0])

    def standardize(self, values: torch.Tensor) -> torch.Tensor:
        """(values - mean) / std over the values of all ranks, with the unbiased std, as for one batch."""
        n, total, squares = self._pooled(values.reshape(-1, 1).to(torch.float64))
        mean = total / n
        var = ((squares - n * mean.square()) / (n - 1)).clamp_min(0.0)
        return (values - mean.to(values.dtype)) / (var.sqrt().to(values.dtype) + 1e-8)

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (normalisation statistics included)."""
        if not self.distributed:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dense = tensor.data.contiguous()   # a widening layer's weight is stored transposed (layers.py)
            dist.broadcast(dense, src=0)
            tensor.data.copy_(dense)

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (any picklable object: a checkpoint, a counter, an exception)."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Ranks()


def ranks_from_environment(device: str) -> Ranks:
    """Join the process group that `torchrun` describes in the environment, or run alone without one.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain `nanoswarm train`
    sets none of them and trains in one process. Training on `device` cuda uses NCCL, on cpu gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return ranks_of_process_group()


def ranks_of_process_group() -> Ranks:
    """The `Ranks` of the initialised default process group (torchrun's, or one a test set up itself)."""
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    cuda = dist.get_backend() == "nccl"
    return Ranks(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                 collective_device=f"cuda:{local_rank}" if cuda else "cpu")


def launch(nproc: int, argv: list[str]) -> int:
    """Run `nanoswarm ARGV` in `nproc` processes on this machine through torchrun; returns the exit code.

    The same as `torchrun --standalone --nproc-per-node NPROC -m nanoswarm ARGV`: a free port is chosen
    for the rendezvous, each process gets one CPU thread unless OMP_NUM_THREADS says otherwise, and a
    failing process stops the others. Its own message says what went wrong; its exit code is returned.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", "1")   # torchrun's own default, set here to spare its warning
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "nanoswarm", *argv])
    # torchrun's agent turns SIGINT and SIGTERM into its own exception and leaves that handler behind;
    # the caller's handlers come back when the run is over.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run(args)
    except ChildFailedError as err:
        return err.get_first_failure()[1].exitcode or 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 0
