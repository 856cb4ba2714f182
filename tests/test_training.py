"""Training: GAE against its definition, a PPO step that moves the policy the right way, checkpoints
that are atomic and refuse what does not fit, runs that resume, and rollouts that stop on NaN."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from nanoswarm.cli import main
from nanoswarm.config import from_mapping
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.policies.compiled import compile_policy_function
from nanoswarm.policies.normalization import batch_moments
from nanoswarm.policies.policy import ActionSample
from nanoswarm.sim.config import EnvConfig, NoiseConfig
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.training import checkpoint as ckpt
from nanoswarm.training.config import PPOConfig, ReplayConfig, available_train_configs, load_train_config
from nanoswarm.training.ppo import Batch, compiled_loss, minibatch_loss, ppo_update
from nanoswarm.training.rollout import generalized_advantages
from nanoswarm.training.train import CHECKPOINT, FINAL, Trainer, TrainingInterrupted, train

from conftest import tiny_config


def reference_gae(rewards, values, dones, last_value, gamma, lam):
    """GAE written from its definition: discounted sums of TD errors, cut at episode ends."""
    steps = len(rewards)
    out = []
    for t in range(steps):
        total, discount = 0.0, 1.0
        for k in range(t, steps):
            next_value = last_value if k == steps - 1 else values[k + 1]
            delta = rewards[k] + gamma * next_value * (1 - dones[k]) - values[k]
            total += discount * delta
            if dones[k]:
                break
            discount *= gamma * lam
        out.append(total)
    return out


def test_gae_matches_its_definition_across_episode_ends():
    gen = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(7, 2, 3, generator=gen), torch.randn(7, 2, 3, generator=gen)
    dones = torch.zeros(7, 2)
    dones[2, 0] = dones[5, 1] = 1.0
    last = torch.randn(2, 3, generator=gen)
    adv, ret = generalized_advantages(rewards, values, dones, last, gamma=0.9, lam=0.8)
    for e in range(2):
        for m in range(3):
            expected = reference_gae(rewards[:, e, m].tolist(), values[:, e, m].tolist(), dones[:, e].tolist(),
                                     float(last[e, m]), 0.9, 0.8)
            assert torch.allclose(adv[:, e, m], torch.tensor(expected), atol=1e-5)
    assert torch.allclose(ret, adv + values)


def sampled_policy(rows: int) -> tuple[SwarmPolicy, torch.Tensor, ActionSample]:
    """A small policy, random observations of `rows` swarms of 3, and the policy's samples for them."""
    torch.manual_seed(0)
    layout = ObservationLayout(num_neighbors=2)
    policy = SwarmPolicy(layout, PolicyConfig(hidden=8, head=(16,)))
    obs = torch.randn(rows, 3, layout.size)
    with torch.no_grad():
        return policy, obs, policy.act(obs)


def test_ppo_update_raises_the_probability_of_advantageous_actions():
    policy, obs, sample = sampled_policy(64)
    advantages = torch.where(sample.action[..., 0] > policy.actor.mean.bias[0], 1.0, -1.0)
    batch = Batch(obs=obs, actions=sample.action, log_probs=sample.log_prob, values=sample.value,
                  advantages=advantages, returns=sample.value + advantages)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    stats = ppo_update(policy, optimizer, batch, PPOConfig(epochs=4, minibatches=2))
    with torch.no_grad():
        new_log_prob, _, _ = policy.evaluate(obs, sample.action)
    gain = new_log_prob - sample.log_prob
    assert float(gain[advantages > 0].mean()) > 0 > float(gain[advantages < 0].mean())
    assert stats["approx_kl"] >= 0 and 0 <= stats["clip_fraction"] <= 1


def test_a_critic_warmup_update_leaves_the_actor_untouched():
    policy, obs, sample = sampled_policy(32)
    batch = Batch(obs=obs, actions=sample.action, log_probs=sample.log_prob, values=sample.value,
                  advantages=torch.randn(32, 3), returns=sample.value + 1.0)
    actor = {k: v.clone() for k, v in policy.actor.state_dict().items()}
    critic = {k: v.clone() for k, v in policy.critic.state_dict().items()}
    ppo_update(policy, torch.optim.Adam(policy.parameters(), lr=1e-2), batch, PPOConfig(epochs=2, minibatches=2),
               train_actor=False)
    assert all(torch.equal(v, policy.actor.state_dict()[k]) for k, v in actor.items())
    assert any(not torch.equal(v, policy.critic.state_dict()[k]) for k, v in critic.items())


def test_the_compiled_loss_gives_the_eager_loss_and_gradients():
    """Training compiles the minibatch loss by default (`compile: true`): same loss, diagnostics and
    gradients as the eager function, within float tolerance."""
    policy, obs, sample = sampled_policy(16)
    rows = Batch(obs=obs, actions=sample.action, log_probs=sample.log_prob - 0.1, values=sample.value,
                 advantages=torch.randn(16, 3), returns=sample.value + torch.randn(16, 3))
    results = []
    for loss_fn in (minibatch_loss, compiled_loss()):
        policy.zero_grad(set_to_none=True)
        loss, diagnostics = loss_fn(policy, rows, PPOConfig(entropy=0.01), True)
        loss.backward()
        results.append((loss.detach(), diagnostics, [p.grad.clone() for p in policy.parameters()]))
    (eager_loss, eager_diag, eager_grads), (loss, diag, grads) = results
    assert torch.allclose(loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert torch.allclose(diag, eager_diag, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(g, e, rtol=1e-4, atol=1e-6) for g, e in zip(grads, eager_grads))
    assert any(float(g.abs().max()) > 0 for g in grads)


def test_a_rollout_with_compiled_outputs_samples_the_eager_actions():
    """Training compiles the networks' part of `act` (`SwarmPolicy.outputs`) and samples outside it: the
    same generator state draws the same actions, log-probabilities and values, within float tolerance."""
    policy, obs, _ = sampled_policy(16)
    compiled = compile_policy_function(policy.outputs)
    samples = []
    for outputs in (None, compiled):
        torch.manual_seed(1)
        with torch.no_grad():
            samples.append(policy.act(obs, outputs))
    eager, fast = samples
    for field in ("action", "log_prob", "value"):
        assert torch.allclose(getattr(fast, field), getattr(eager, field), rtol=1e-5, atol=1e-5), field


def test_compiled_observation_moments_are_the_eager_ones():
    """The trainer compiles `batch_moments` for its per-update observation statistics: same float64 mean,
    variance and count."""
    x = torch.randn(4, 16, 3, 7) * 3 + 1
    (mean, var, n), (c_mean, c_var, c_n) = batch_moments(x), torch.compile(batch_moments, dynamic=False)(x)
    assert n == c_n == 192.0
    assert torch.allclose(c_mean, mean, rtol=1e-12) and torch.allclose(c_var, var, rtol=1e-12)


def test_ready_made_configs_load_and_validate():
    assert {"single", "swarm8", "swarm8_obstacles", "swarm32"} <= set(available_train_configs())
    for name in available_train_configs():
        load_train_config(name).validate()


def test_unknown_config_name_lists_the_ready_made_ones():
    with pytest.raises(Exception, match="swarm8"):
        load_train_config("swarm9")


def test_train_writes_config_metrics_tensorboard_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    trainer = train(tiny_config(), out)
    assert trainer.agent_steps == tiny_config().total_steps
    for name in ("config.yaml", "metrics.jsonl", CHECKPOINT, FINAL):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["agent_steps"] for r in records] == [96, 192, 288]
    assert all(r["agent_steps_per_s"] > 0 for r in records)
    assert any("train/success_rate" in r for r in records)   # whole 0.1 s episodes end inside the run
    policy, data = ckpt.load_policy(out / FINAL)
    assert data["agent_steps"] == 288


def test_resume_continues_from_the_checkpoint_and_matches_an_uninterrupted_policy_shape(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(total_steps=96), out)
    resumed = train(tiny_config(total_steps=288), out, resume=True)
    assert resumed.agent_steps == 288
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["agent_steps"] for r in records] == [96, 192, 288]


def test_resume_refuses_a_different_config(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(total_steps=96), out)
    changed = tiny_config()
    changed.ppo.learning_rate = 1e-2
    with pytest.raises(ckpt.CheckpointError, match="another config"):
        train(changed, out, resume=True)


def test_interrupt_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = {"n": 0}
    original = Trainer.update

    def update_then_interrupt(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "update", update_then_interrupt)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(tiny_config(), out)
    _, data = ckpt.load_policy(out / CHECKPOINT)
    assert data["agent_steps"] == 96          # the finished update is kept, the interrupted one is redone
    monkeypatch.setattr(Trainer, "update", original)
    assert train(tiny_config(), out, resume=True).agent_steps == 288


def test_nan_in_a_rollout_stops_training_naming_step_and_drone(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config())
    original = trainer.policy.act

    def act_with_nan(obs, outputs=None):
        sample = original(obs, outputs)
        sample.action[2, 1, 0] = float("nan")
        return sample

    monkeypatch.setattr(trainer.policy, "act", act_with_nan)
    with pytest.raises(FloatingPointError, match=r"update 0, agent step 0 \(step 0 of the rollout\): the action of "
                                                 r"environment 2, drone 1 is not finite .*the policy produced NaN"):
        trainer.collect()


def test_a_diverging_simulation_is_named_with_the_step_that_produced_it(monkeypatch):
    """The rollout is checked once, at its end: the first bad quantity in time is reported, not the NaN
    actions and rewards that follow from it."""
    trainer = Trainer(tiny_config())
    env = trainer.env
    original = env.step
    calls = []

    def step_that_diverges_at_the_fifth(action):
        result = original(action)
        calls.append(len(calls))
        if len(calls) == 5:
            result.observation[1, 0, 0] = float("inf")   # a diverged state spoils the reward of the same step
            result.reward[1, 0] = float("nan")
        return result

    monkeypatch.setattr(env, "step", step_that_diverges_at_the_fifth)
    agent_step = 4 * env.num_envs * env.drones
    with pytest.raises(FloatingPointError, match=rf"agent step {agent_step} \(step 4 of the rollout\): the "
                                                 r"observation of environment 1, drone 0 is not finite .*diverged"):
        trainer.collect()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    ckpt.save_checkpoint(path, {"value": 1})

    def failing_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, {"value": 2})
    assert ckpt.read_checkpoint(path)["value"] == 1
    assert list(tmp_path.iterdir()) == [path]      # no temporary file left behind


def test_corrupt_checkpoint_is_refused_with_advice(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.read_checkpoint(path)


def test_checkpoint_from_another_layout_or_schema_is_refused(tmp_path):
    policy = SwarmPolicy(ObservationLayout(num_neighbors=2), PolicyConfig(hidden=8, head=(16,)))
    path = tmp_path / "p.pt"
    ckpt.save_checkpoint(path, ckpt.policy_payload(policy, 0.0))
    with pytest.raises(ckpt.CheckpointError, match="num_neighbors: checkpoint 2, here 6"):
        ckpt.load_policy(path, expected=ObservationLayout(num_neighbors=6))
    data = torch.load(path, weights_only=True)
    data["layout"]["schema_version"] = 0
    torch.save(data, path)
    with pytest.raises(ckpt.CheckpointError, match="schema_version: checkpoint 0, here 1"):
        ckpt.load_policy(path)
    data["schema"] = 99
    torch.save(data, path)
    with pytest.raises(ckpt.CheckpointError, match="schema 99"):
        ckpt.read_checkpoint(path)


def test_eval_cli_reports_the_anchor_metrics_and_plots(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(total_steps=96), out)
    report = tmp_path / "eval.json"
    assert main(["eval", str(out / FINAL), "--scenario", "swap_goals", "--episodes", "3",
                 "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    for key in ("success_rate", "collision_rate", "collisions_per_drone_minute", "final_distance_m"):
        assert 0.0 <= metrics[key] < float("inf"), key
    assert metrics["episodes"] == 3 and metrics["scenario"] == "swap_goals"
    png = report.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_eval_of_a_broken_checkpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "x.pt"
    path.write_text("nonsense")
    assert main(["eval", str(path), "--episodes", "1"]) == 2
    assert "corrupt" in capsys.readouterr().out


def test_eval_env_config_keeps_training_settings_and_applies_overrides():
    from nanoswarm.config import to_mapping
    from nanoswarm.training.evaluate import eval_env_config
    data = {"config": to_mapping(tiny_config())}
    env = eval_env_config(data, scenario="obstacles", drones=5)
    assert env.scenario == "obstacles" and env.obstacle_density == 0.2 and env.drones_per_swarm == 5
    assert env.episode_s == tiny_config().env.episode_s
    assert from_mapping(EnvConfig, data["config"]["env"]).scenario == "mix"


def test_train_cli_seed_overrides_the_configs_seed(tmp_path):
    """`--seed` is how the 3-seed medians of BENCHMARKS.md are run from one ready-made config."""
    import yaml
    from nanoswarm.config import to_mapping
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(to_mapping(tiny_config())))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--seed", "7", "--total-steps", "96"]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["seed"] == 7


def test_bench_train_reports_the_median_of_its_repeats(tmp_path):
    config = tmp_path / "tiny.yaml"
    import yaml
    from nanoswarm.config import to_mapping
    config.write_text(yaml.safe_dump(to_mapping(tiny_config())))
    out = tmp_path / "bench.json"
    assert main(["bench", "train", "--config", str(config), "--updates", "1", "--repeats", "3", "--no-compile",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert sorted(result["agent_steps_per_s_all"])[1] == result["agent_steps_per_s"] > 0
    assert 0 < result["rollout_fraction"] < 1 and result["actor_parameters"] > 0


def test_staggered_clocks_spread_episode_ends():
    trainer = Trainer(tiny_config(env=EnvConfig(num_envs=64, drones_per_swarm=2, num_neighbors=1,
                                                episode_s=1.0, noise=NoiseConfig.off())))
    steps = trainer.env.state.steps
    assert int(steps.min()) >= 0 and int(steps.max()) < trainer.env.config.episode_steps
    assert len(set(steps.tolist())) > 20


def test_resume_forgets_what_was_logged_after_the_last_checkpoint(tmp_path):
    """A killed run may have logged updates its checkpoint does not hold; the resumed run redoes them."""
    out = tmp_path / "run"
    train(tiny_config(total_steps=96), out)
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"agent_steps": 192, "lost": True}) + "\n")
    train(tiny_config(total_steps=288), out, resume=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["agent_steps"] for r in records] == [96, 192, 288]
    assert not any("lost" in r for r in records)


def test_collision_replay_restarts_episodes_from_before_the_collision():
    """Two drones flown head-on collide; the state from before the impact enters the buffer, and the next
    episode of that environment restarts from it (mid-episode clock, replayed flag) instead of fresh."""
    from nanoswarm.sim.env import SwarmEnv
    from nanoswarm.training.replay import CollisionReplay
    from nanoswarm.training.train import hover_action

    config = EnvConfig(num_envs=2, drones_per_swarm=2, num_neighbors=1, scenario="random_goals", episode_s=1.0,
                       grace_s=0.0, noise=NoiseConfig.off(), downwash=False, seed=2)
    env = SwarmEnv(config)
    env.reset()
    state = env.state
    for e in range(2):
        state.drones.pos[e, 0] = torch.tensor([-0.5, 0.0, 2.0])
        state.drones.pos[e, 1] = torch.tensor([0.5, 0.0, 2.0])
        state.drones.vel[e, 0] = torch.tensor([1.0, 0.0, 0.0])
        state.drones.vel[e, 1] = torch.tensor([-1.0, 0.0, 0.0])
    replay = CollisionReplay(env, ReplayConfig(snapshot_every_s=0.05, rewind_s=0.1, capacity=4, probability=1.0,
                                               max_replays=2), np.random.default_rng(0))
    replay.active = True
    hover = torch.full((2, 2, 4), hover_action(config.params))
    for _ in range(config.episode_steps - 1):
        replay.after_step(env.step(hover))
    assert replay.size == 0                    # collisions are stored when the rollout ends
    replay.flush()
    assert int(state.stats.drone_collisions.sum()) > 0
    assert replay.size == 2                    # both environments collided, once stored each
    stored_clock = int(replay.buffer.state.steps[0])
    assert 0 < stored_clock < config.episode_steps
    result = env.step(hover)                   # the episodes end and restart
    replay.after_step(result)
    assert bool(result.done.all()) and bool(replay.replayed.all())
    assert set(env.state.steps.tolist()) <= set(replay.buffer.state.steps.tolist())
    assert env.clock.steps.tolist() == env.state.steps.tolist()   # the host's clocks came along
    assert int(env.state.steps.min()) > 0       # restarted mid-episode, not from step 0
    assert int(replay.uses.sum()) == 2


@pytest.mark.parametrize("name", ["single", "swarm8", "swarm8_obstacles", "swarm32"])
def test_shipped_policies_load_by_name_and_fit_their_configs(name):
    from nanoswarm.training.evaluate import eval_env_config
    policy, data = ckpt.load_policy(name)
    env = eval_env_config(data)
    assert ObservationLayout(env.num_neighbors) == policy.layout
    assert data["agent_steps"] > 0 and set(data["eval"]) >= {"success_rate", "collision_rate"}
    action = policy.deterministic_action(torch.randn(2, env.drones_per_swarm, policy.layout.size))
    assert bool(torch.isfinite(action).all()) and float(action.abs().max()) <= 1.0


def test_sigterm_lets_the_update_finish_then_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = Trainer.train_step

    def step_with_sigterm_in_the_second(self):
        if self.updates == 1:
            os.kill(os.getpid(), signal.SIGTERM)   # arrives mid-update, as from a job scheduler
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", step_with_sigterm_in_the_second)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(tiny_config(), out)
    assert ckpt.read_checkpoint(out / CHECKPOINT)["trainer"]["updates"] == 2   # the update it was in, finished
    monkeypatch.setattr(Trainer, "train_step", original)
    assert train(tiny_config(), out, resume=True).agent_steps == 288


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch.cuda.is_available() is False")
def test_training_updates_run_on_cuda_and_leave_everything_there(tmp_path):
    config = tiny_config()
    config.env.device = "cuda"
    trainer = Trainer(config, out=tmp_path)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    for _ in range(2):
        record = trainer.train_step()
    assert all(p.device.type == "cuda" for p in trainer.policy.parameters())
    assert trainer.rollout.obs.device.type == "cuda" and trainer.policy.obs_norm.mean.device.type == "cuda"
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))
    assert record["agent_steps_per_s"] > 0
    trainer.save()
    resumed = Trainer(config, out=tmp_path, resume=True)
    assert resumed.updates == 2 and resumed.policy.obs_norm.mean.device.type == "cuda"


def test_resume_restores_the_random_state_the_checkpoint_saved(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(total_steps=96), out)
    saved = ckpt.read_checkpoint(out / CHECKPOINT)["trainer"]["rng"][0]
    Trainer(tiny_config(), out, resume=True)   # (its generator goes on to stagger the fresh episodes)
    assert torch.equal(torch.get_rng_state(), saved["torch"])   # the actions' noise continues where it stopped
