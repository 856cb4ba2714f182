"""Bodies of the training processes that tests/test_distributed.py starts (importable by spawned children)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.training.config import PPOConfig
from nanoswarm.training.distributed import ranks_of_process_group
from nanoswarm.training.ppo import Batch, ppo_update
from nanoswarm.training.runlog import NullLog
from nanoswarm.training.train import Trainer, TrainingInterrupted

from conftest import tiny_config

UPDATE_CONFIG = PPOConfig(epochs=2, minibatches=1, learning_rate=1e-3)


def join(rank: int, world_size: int, rendezvous: Path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    return ranks_of_process_group()


def flat_parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def small_policy() -> SwarmPolicy:
    torch.manual_seed(0)
    return SwarmPolicy(ObservationLayout(num_neighbors=2), PolicyConfig(hidden=8, head=(16,), critic_hidden=8), 0.0)


def random_batch(seed: int, rows: int = 24) -> Batch:
    """A batch as a rollout would leave it: the policy's own samples, random advantages and returns."""
    policy = small_policy()
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(rows, 3, policy.layout.size, generator=generator)
    torch.manual_seed(seed)
    with torch.no_grad():
        sample = policy.act(obs)
    return Batch(obs=obs, actions=sample.action, log_probs=sample.log_prob, values=sample.value,
                 advantages=torch.randn(rows, 3, generator=generator), returns=torch.randn(rows, 3, generator=generator))


def train_a_few_updates(rank: int, world_size: int, rendezvous: Path, out: Path) -> None:
    """Three updates of the tiny run; saves what each rank ended with."""
    ranks = join(rank, world_size, rendezvous)
    trainer = Trainer(tiny_config(), ranks=ranks)
    initial = flat_parameters(trainer.policy)
    first_obs = trainer.env.observation.clone()
    for _ in range(3):
        trainer.train_step()
    torch.save({"initial": initial, "final": flat_parameters(trainer.policy), "first_obs": first_obs,
                "obs_norm": trainer.policy.obs_norm.state_dict(), "agent_steps": trainer.agent_steps},
               out / f"rank{rank}.pt")
    ranks.close()


def update_once(rank: int, world_size: int, rendezvous: Path, out: Path) -> None:
    """One PPO update of the shared small policy on this rank's share of the batch."""
    ranks = join(rank, world_size, rendezvous)
    policy = small_policy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=UPDATE_CONFIG.learning_rate, eps=1e-5)
    batch = random_batch(100 + rank)
    ppo_update(policy, optimizer, batch, UPDATE_CONFIG, ranks=ranks)
    policy.obs_norm.merge(*ranks.moments(batch.obs))
    torch.save({"final": flat_parameters(policy), "obs_norm": policy.obs_norm.state_dict()}, out / f"rank{rank}.pt")
    ranks.close()


def stop_on_rank_one(rank: int, world_size: int, rendezvous: Path, out: Path) -> None:
    """Rank 1 alone is asked to stop during its second update; both must stop there and save once."""
    ranks = join(rank, world_size, rendezvous)
    trainer = Trainer(tiny_config(total_steps=10_000), out=out / "run", ranks=ranks)
    original = trainer.train_step

    def step_and_maybe_stop():
        record = original()
        if ranks.rank == 1 and trainer.updates == 2:
            trainer.stop_requested = True
        return record

    trainer.train_step = step_and_maybe_stop
    try:
        trainer.run(NullLog())
        outcome = "finished"
    except TrainingInterrupted as err:
        outcome = str(err)
    torch.save({"outcome": outcome, "updates": trainer.updates}, out / f"rank{rank}.pt")
    ranks.close()
