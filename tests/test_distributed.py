"""Data-parallel PPO on torch.distributed (gloo, 2 CPU processes): ranks agree, and 2 ranks = 1 big batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

import distributed_workers as workers
from nanoswarm.config import to_mapping
from nanoswarm.policies.normalization import RunningNorm
from nanoswarm.training import checkpoint as ckpt
from nanoswarm.training.ppo import Batch, ppo_update
from nanoswarm.training.train import CHECKPOINT, FINAL

from conftest import tiny_config


def run_ranks(body, tmp_path: Path, world_size: int = 2) -> list[dict]:
    """Run `body(rank, world_size, rendezvous, out)` in `world_size` fresh processes; their saved results."""
    mp.spawn(body, args=(world_size, tmp_path / "rendezvous", tmp_path), nprocs=world_size, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def test_two_ranks_hold_identical_parameters_after_several_updates(tmp_path):
    ranks = run_ranks(workers.train_a_few_updates, tmp_path)
    assert torch.equal(ranks[0]["final"], ranks[1]["final"])
    assert not torch.equal(ranks[0]["final"], ranks[0]["initial"])     # they did learn
    assert not torch.equal(ranks[0]["first_obs"], ranks[1]["first_obs"])  # from different episodes
    for key in ("mean", "var", "count"):
        assert torch.equal(ranks[0]["obs_norm"][key], ranks[1]["obs_norm"][key])
    config = tiny_config()
    rows_per_rank = 3 * config.ppo.rollout_steps * config.env.num_envs * config.env.drones_per_swarm
    assert float(ranks[0]["obs_norm"]["count"]) == 2 * rows_per_rank    # statistics of both ranks
    assert ranks[0]["agent_steps"] == 2 * rows_per_rank                  # steps of both ranks counted


def test_one_update_of_two_ranks_equals_one_update_over_their_combined_batch(tmp_path):
    ranks = run_ranks(workers.update_once, tmp_path)
    shares = [workers.random_batch(100), workers.random_batch(101)]
    combined = Batch(*(torch.cat([getattr(s, f) for s in shares]) for f in Batch.__dataclass_fields__))
    policy = workers.small_policy()
    initial = workers.flat_parameters(policy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=workers.UPDATE_CONFIG.learning_rate, eps=1e-5)
    ppo_update(policy, optimizer, combined, workers.UPDATE_CONFIG)
    single = workers.flat_parameters(policy)
    assert (single - initial).abs().max() > 1e-4                     # the update moved the weights
    torch.testing.assert_close(ranks[0]["final"], single, rtol=0, atol=2e-6)
    torch.testing.assert_close(ranks[1]["final"], single, rtol=0, atol=2e-6)
    norm = RunningNorm(combined.obs.shape[-1])
    norm.update(combined.obs)
    for key in ("mean", "var", "count"):
        torch.testing.assert_close(ranks[0]["obs_norm"][key], getattr(norm, key), rtol=1e-6, atol=1e-6)


def test_a_stop_request_on_one_rank_stops_every_rank_after_the_same_update(tmp_path):
    ranks = run_ranks(workers.stop_on_rank_one, tmp_path)
    assert [r["updates"] for r in ranks] == [2, 2]
    assert all("checkpoint saved" in r["outcome"] for r in ranks)
    data = ckpt.read_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert data["trainer"]["updates"] == 2
    assert len(data["trainer"]["rng"]) == 2                          # each rank's random state, to resume


def nanoswarm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nanoswarm", *args], capture_output=True, text=True, timeout=300)


def test_train_with_nproc_2_writes_one_run_that_resumes_with_2_processes_only(tmp_path):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(to_mapping(tiny_config()), sort_keys=False))
    out = tmp_path / "run"
    first = nanoswarm("train", str(config_path), "--nproc", "2", "--out", str(out), "--total-steps", "384")
    assert first.returncode == 0, first.stderr[-2000:]
    assert ckpt.read_checkpoint(out / FINAL)["agent_steps"] == 384     # 2 updates of 2 ranks x 96 steps
    resumed = nanoswarm("train", str(config_path), "--nproc", "2", "--out", str(out), "--total-steps", "768",
                        "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    logged = [yaml.safe_load(line)["agent_steps"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [192, 384, 576, 768]                               # rank 0 alone logs
    alone = nanoswarm("train", str(config_path), "--out", str(out), "--total-steps", "1000", "--resume")
    assert alone.returncode == 2
    assert "--nproc 2" in " ".join(alone.stdout.split())


@pytest.mark.parametrize("nproc", ["0", "-1"])
def test_train_refuses_fewer_than_one_process(nproc, capsys):
    from nanoswarm.cli import main

    assert main(["train", "single", "--nproc", nproc]) == 2
    assert "at least 1" in capsys.readouterr().out


def test_bench_scaling_measures_every_process_count_with_the_real_training_runs(tmp_path):
    from nanoswarm.training.bench import bench_scaling

    result = bench_scaling(tiny_config(), "tiny", nprocs=(1, 2), updates=1, repeats=1, workdir=tmp_path)
    assert set(result.agent_steps_per_s) == {1, 2} and all(v > 0 for v in result.agent_steps_per_s.values())
    assert result.speedup[1] == 1.0
    assert ckpt.read_checkpoint(tmp_path / "n2_r0" / FINAL)["agent_steps"] == 2 * 2 * 96  # 2 updates of 2 ranks


def test_launching_leaves_the_callers_signal_handlers_as_they_were(tmp_path):
    import signal

    from nanoswarm.training.distributed import launch

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert launch(1, ["train", "no_such_config"]) == 2     # a quick run that fails on its config
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
