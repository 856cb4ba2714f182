"""The training loop: collect a rollout from every environment at once, update with PPO, repeat.

Also everything around it that a long run needs: curriculum (penalty annealing, obstacle density),
collision replay, periodic evaluation (time to competence), atomic checkpoints, resume after Ctrl-C, a
kill or a crash, and a clear stop when a rollout produces NaN or Inf.

The same loop runs data-parallel over several processes (`distributed.Ranks`, started by torchrun):
each rank collects its own environments, the update averages gradients, and rank 0 logs, evaluates and
checkpoints. A stop request (Ctrl-C, SIGTERM) is honoured at the end of the current update, on every
rank at once, so the checkpoint always holds a whole update.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nanoswarm.config import to_mapping
from nanoswarm.policies import SwarmPolicy
from nanoswarm.policies.compiled import compile_policy_function
from nanoswarm.policies.normalization import RunningNorm, batch_moments
from nanoswarm.policies.transfer import transfer_weights
from nanoswarm.sim.controller import GeometricGains
from nanoswarm.sim.dynamics import action_for_thrust, hover_thrust
from nanoswarm.sim.env import EPISODE_METRICS, SwarmEnv, first_nonfinite, nonfinite_message
from nanoswarm.sim.params import load_params, nominal_drone_params
from nanoswarm.training.checkpoint import (CheckpointError, load_policy, policy_from_checkpoint, policy_payload,
                                           read_checkpoint, save_checkpoint)
from nanoswarm.training.config import TrainConfig
from nanoswarm.training.distributed import SINGLE, Ranks, ranks_from_environment
from nanoswarm.training.evaluate import HEADLINE, evaluate_policy
from nanoswarm.training.kickstart import ControllerExpert, kickstart
from nanoswarm.training.ppo import Batch, compiled_loss, minibatch_loss, ppo_update
from nanoswarm.training.replay import CollisionReplay
from nanoswarm.training.rollout import Rollout, generalized_advantages
from nanoswarm.training.runlog import NullLog, RunLog

CHECKPOINT = "checkpoint.pt"   # everything needed to resume
FINAL = "policy.pt"            # the trained policy alone (what eval, export and the repository keep)
METRIC_WINDOW = 20             # updates over which training-episode metrics are averaged for display


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: the run stopped early and saved a checkpoint to resume from."""


def hover_action(params_name: str) -> float:
    """The motor command that holds a nominal drone in hover: the head's initial output."""
    params = nominal_drone_params(load_params(params_name), 1, 0.005)
    return float(action_for_thrust(hover_thrust(params), params).mean())


def learning_rate(cfg: TrainConfig, agent_steps: int) -> float:
    p = cfg.ppo
    frac = min(1.0, agent_steps / cfg.total_steps)
    if p.lr_schedule == "linear":
        scale = 1.0 - (1.0 - p.lr_final_fraction) * frac
    elif p.lr_schedule == "cosine":
        scale = p.lr_final_fraction + (1.0 - p.lr_final_fraction) * 0.5 * (1.0 + math.cos(math.pi * frac))
    else:
        scale = 1.0
    return p.learning_rate * scale


def scheduled_density(cfg: TrainConfig, agent_steps: int) -> float:
    density = cfg.env.obstacle_density
    for at, value in cfg.curriculum.obstacle_density:
        if agent_steps >= at:
            density = value
    return density


class Trainer:
    def __init__(self, config: TrainConfig, out: Path | None = None, resume: bool = False, ranks: Ranks = SINGLE):
        config.validate()
        self.config = config
        self.out = out
        self.ranks = ranks
        seed = ranks.seed(config.seed)
        torch.manual_seed(config.seed)   # the same initial weights on every rank
        env_config = dataclasses.replace(config.env, seed=seed, device=ranks.device(config.env.device))
        # NaN and Inf are looked for once per rollout (`_check_rollout`), not by the environment each step.
        self.env = SwarmEnv(env_config, compile=config.compile, check_each_step=False)
        self.hover_action = hover_action(config.env.params)
        self.policy = SwarmPolicy(self.env.layout, config.policy, self.hover_action).to(self.env.device)
        # fused: one kernel over all parameters instead of a loop of small ops per parameter and minibatch
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.ppo.learning_rate, eps=1e-5,
                                          fused=True)
        self.loss_fn = compiled_loss() if config.compile else minibatch_loss
        self.policy_outputs = compile_policy_function(self.policy.outputs) if config.compile else self.policy.outputs
        # The observation statistics of a whole rollout (131 k x 64 for swarm8): 85-100 ms per update in eager
        # float64, 13 ms compiled (BENCHMARKS.md, training throughput).
        self.obs_moments = torch.compile(batch_moments, dynamic=False) if config.compile else batch_moments
        self.return_norm = RunningNorm(1).to(self.env.device)
        self.generator = torch.Generator(device=self.env.device)
        self.generator.manual_seed(seed)
        self.replay_rng = np.random.default_rng(seed)   # the replay draws its choices on the host
        self.replay = CollisionReplay(self.env, config.replay, self.replay_rng) if config.replay.enabled else None
        self.agent_steps = 0
        self.updates = 0
        self.train_time = 0.0          # wall seconds spent training (not evaluating), summed over resumes
        self.next_eval = config.eval.every_s
        self.competence: dict[str, float] | None = None
        self.last_eval: dict[str, Any] = {}
        self.recent: deque[dict[str, float]] = deque(maxlen=METRIC_WINDOW)
        self.messages: list[str] = []  # for the user, printed when the run starts
        self.stop_requested = False    # set by Ctrl-C or SIGTERM, honoured at the end of the update
        if resume:
            self._resume()
        elif config.init_from:
            self._init_from(config.init_from)
        elif config.kickstart.iterations:
            self._kickstart()
        ranks.broadcast_module(self.policy)
        if not resume:
            torch.manual_seed(seed)      # ranks sample different actions from here on (a resume restored its own)
        self.env.reset(seed + self.updates)
        self.env.stagger(self.generator)
        # The staggered first episodes started mid-way: their metrics would mislead, so they are not reported.
        self.partial_episode = torch.ones(self.env.num_envs, dtype=torch.bool, device=self.env.device)
        e, m = self.env.num_envs, self.env.drones
        self.returns = torch.zeros(e, m, device=self.env.device)
        self.rollout = Rollout.empty(config.ppo.rollout_steps, e, m, self.env.obs_size, self.env.device)

    def _kickstart(self) -> None:
        """Rank 0 teaches the actor to fly like the geometric controller; the others then copy it."""
        if self.ranks.is_main:
            start = time.perf_counter()
            cfg = self.config
            expert = ControllerExpert(self.policy.layout, cfg.env,
                                      GeometricGains(max_speed=cfg.expert.max_speed),
                                      cfg.expert.avoidance)
            self.agent_steps += kickstart(self.policy, cfg.env, cfg.kickstart, cfg.seed, self.messages.append,
                                          expert, compile=cfg.compile)
            self.train_time += time.perf_counter() - start
        self.agent_steps, self.train_time = self.ranks.broadcast_object((self.agent_steps, self.train_time))

    # --------------------------------------------------------------------------------- persistence
    def _init_from(self, path: str) -> None:
        """Start from a trained policy: the same layout loads whole, another neighbour count by transfer."""
        source, _ = load_policy(path)
        if source.config.actor != self.config.policy.actor:
            raise CheckpointError(f"init_from '{path}' holds a '{source.config.actor}' actor, this config trains "
                                  f"'{self.config.policy.actor}'; make policy.actor match")
        left = transfer_weights(source, self.policy)
        if left:
            self.messages.append(f"init_from {path}: kept fresh {', '.join(left)}")

    def _resume(self) -> None:
        """Continue from the checkpoint: rank 0 reads it and hands it to every rank (no shared disk needed)."""
        assert self.out is not None
        path = self.out / CHECKPOINT
        data = self.ranks.broadcast_object(_read_or_error(path) if self.ranks.is_main else None)
        if isinstance(data, CheckpointError):
            raise data
        if comparable(data["config"]) != comparable(to_mapping(self.config)):
            raise CheckpointError(f"{path} was written by a run with another config; resume "
                                  "with the config in its folder (config.yaml) or start a new --out")
        t = data["trainer"]
        if "rng" not in t:
            raise CheckpointError(f"{path} was written by an older nanoswarm that did not record per-process "
                                  "random states; start a new run (init_from can start it from that policy)")
        if len(t["rng"]) != self.ranks.world_size:
            raise CheckpointError(f"{path} was written by {len(t['rng'])} training process(es), this run has "
                                  f"{self.ranks.world_size}; resume with --nproc {len(t['rng'])} (the rollouts "
                                  "and random streams are per process)")
        checked = policy_from_checkpoint(data, path, expected=self.env.layout)
        self.policy.load_state_dict(checked.state_dict())
        self.optimizer.load_state_dict(data["optimizer"])
        self.return_norm.load_state_dict(data["return_norm"])
        self.agent_steps, self.updates, self.train_time = t["agent_steps"], t["updates"], t["train_time"]
        self.next_eval, self.competence = t["next_eval"], t["competence"]
        self._set_random_state(t["rng"][self.ranks.rank])

    def _random_state(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
                 "replay": self.replay_rng.bit_generator.state}
        if self.env.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.env.device)
        return state

    def _set_random_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        self.generator.set_state(state["generator"])
        if "replay" in state:
            self.replay_rng.bit_generator.state = state["replay"]
        if "cuda" in state and self.env.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.env.device)

    def payload(self) -> dict[str, Any]:
        return {**policy_payload(self.policy, self.hover_action),
                "config": to_mapping(self.config), "agent_steps": self.agent_steps, "train_time_s": self.train_time,
                "eval": self.last_eval, "competence": self.competence}

    def save(self) -> None:
        """Write the checkpoint (rank 0), with every rank's random state; all ranks must call it together."""
        rng = self.ranks.gather_objects(self._random_state())
        if self.out is None or not self.ranks.is_main:
            return
        save_checkpoint(self.out / CHECKPOINT, {
            **self.payload(), "optimizer": self.optimizer.state_dict(), "return_norm": self.return_norm.state_dict(),
            "trainer": {"agent_steps": self.agent_steps, "updates": self.updates, "train_time": self.train_time,
                        "next_eval": self.next_eval, "competence": self.competence, "rng": rng}})

    # ------------------------------------------------------------------------------------ rollout
    def collect(self) -> dict[str, float]:
        """Fill the rollout buffer; return the mean metrics of the episodes that ended in it (on all ranks).

        What reads the device happens around the step loop, never inside it: the episodes the loop will
        restart are drawn before it, NaN or Inf is looked for and collisions are stored after it.
        """
        self.env.reserve(self._episodes_needed())
        sums = self._run_rollout()
        self._check_rollout()
        if self.replay is not None:
            self.replay.flush()
        self.return_norm.merge(*self.ranks.moments(self.rollout.discounted.reshape(-1, 1)))
        totals = self.ranks.sum(sums).tolist()
        metrics = {"reward": totals[0] / (self.config.ppo.rollout_steps * self.ranks.world_size)}
        episodes = totals[-1]
        if episodes:
            metrics.update({f"train/{k}": v / episodes for k, v in zip(EPISODE_METRICS, totals[1:-1])})
            metrics["train/episodes"] = episodes
        return metrics

    def _run_rollout(self) -> torch.Tensor:
        """The step loop. On a GPU it only queues work: episode ends are known from the host's clocks and
        every sum stays on the device. Returns those sums: the reward, then each episode metric weighted by
        whether its episode counts (not a staggered or replayed start), then the number of such episodes."""
        cfg, env, buf = self.config, self.env, self.rollout
        gamma = cfg.ppo.gamma
        reward_scale = self.return_norm.scale() if cfg.ppo.normalize_rewards else 1.0
        obs = env.observation
        assert obs is not None
        sums = torch.zeros(len(EPISODE_METRICS) + 2, dtype=torch.float64, device=env.device)
        for t in range(cfg.ppo.rollout_steps):
            with torch.no_grad():
                sample = self.policy.act(obs, self.policy_outputs)
            buf.obs[t], buf.actions[t] = obs, sample.action
            buf.log_probs[t], buf.values[t] = sample.log_prob, sample.value
            result = env.step(sample.action)
            reward = result.reward
            sums[0] += reward.mean()
            self.returns = self.returns * gamma + reward
            buf.discounted[t] = self.returns
            scaled = reward * reward_scale
            done = result.done
            if "done_envs" in result.info:
                rows = result.info["done_envs"]
                with torch.no_grad():
                    scaled[rows] += gamma * self.policy.value(result.info["final_observation"])
                self.returns[rows] = 0.0
                kept = ~self.partial_episode[rows]
                if self.replay is not None:
                    kept &= ~self.replay.replayed[rows]
                self.partial_episode[rows] = False
                weight = kept.to(sums.dtype)
                episode = result.info["episode"]
                sums[1:-1] += torch.stack([episode[k].to(sums.dtype) @ weight for k in EPISODE_METRICS])
                sums[-1] += weight.sum()
            buf.rewards[t], buf.dones[t] = scaled, done.float()
            if self.replay is not None:
                self.replay.after_step(result)
            obs = env.observation
        return sums

    def _episodes_needed(self) -> int:
        """Fresh episodes the coming rollout restarts: its time-limit ends, and as many again under collision
        replay (a replayed episode restarts part-way through and may end once more in the same rollout)."""
        ends = self.env.ends_within(self.config.ppo.rollout_steps)
        return 2 * ends if self.replay is not None and self.replay.active else ends

    def _check_rollout(self) -> None:
        """Stop on the first NaN or Inf of the rollout, naming the step, the environment and the drone.

        Step t takes action t and returns observation t + 1 (the last one is the environment's current
        observation) and reward t. The first bad quantity in time is the cause, the rest its consequences; within
        a step the action comes first, and a diverged state shows in both observation and reward, so the
        observation is named before the reward.
        """
        buf, env = self.rollout, self.env
        assert env.observation is not None
        produced = (("action", buf.actions, 0), ("observation", buf.obs[1:], 0),
                    ("observation", env.observation.unsqueeze(0), len(buf.obs) - 1),
                    ("reward", buf.rewards.unsqueeze(-1), 0))
        found = []
        for order, (what, values, first_step) in enumerate(produced):
            where = first_nonfinite(values, 3)
            if where is not None:
                found.append((first_step + where[0], order, what, values, where))
        if not found:
            return
        t, _, what, values, where = min(found, key=lambda f: f[:2])
        agent_step = self.agent_steps + t * env.num_envs * env.drones * self.ranks.world_size
        raise FloatingPointError(f"training stopped at update {self.updates}, agent step {agent_step:,} (step {t} "
                                 f"of the rollout): {nonfinite_message(what, values, where)}")

    def update(self) -> dict[str, float]:
        cfg, buf = self.config, self.rollout
        with torch.no_grad():
            last_value = self.policy.value(self.env.observation)
        advantages, returns = generalized_advantages(buf.rewards, buf.values, buf.dones, last_value,
                                                     cfg.ppo.gamma, cfg.ppo.gae_lambda)
        rows = buf.obs.shape[0] * buf.obs.shape[1]
        batch = Batch(obs=buf.obs.reshape(rows, *buf.obs.shape[2:]),
                      actions=buf.actions.reshape(rows, *buf.actions.shape[2:]),
                      log_probs=buf.log_probs.reshape(rows, -1), values=buf.values.reshape(rows, -1),
                      advantages=advantages.reshape(rows, -1), returns=returns.reshape(rows, -1))
        stats = ppo_update(self.policy, self.optimizer, batch, cfg.ppo, self.generator,
                           train_actor=self.updates >= cfg.ppo.critic_warmup_updates, ranks=self.ranks,
                           loss_fn=self.loss_fn)
        finite = torch.stack([torch.isfinite(p).all() for p in self.policy.parameters()])
        for (name, _), ok in zip(self.policy.named_parameters(), finite.tolist()):   # one read of the device
            if not ok:
                raise FloatingPointError(f"training stopped at update {self.updates}, agent step "
                                         f"{self.agent_steps:,}: parameter '{name}' became NaN or Inf; lower "
                                         "ppo.learning_rate or ppo.max_grad_norm and resume from the last checkpoint")
        # Normalisation moves only after the update, so the update saw the statistics the rollout used.
        # A kickstarted actor keeps the statistics it learned to fly with: moving them under it (PPO's noisy
        # rollouts visit wider states) changed what the frozen actor computed and cost it half its success.
        if not cfg.kickstart.iterations:
            self.policy.obs_norm.merge(*self.ranks.moments(buf.obs, self.obs_moments))
        stats["std"] = float(self.policy.actor.log_std.detach().exp().mean())
        return stats

    # -------------------------------------------------------------------------------- curriculum
    def apply_curriculum(self) -> None:
        cfg = self.config
        anneal = cfg.curriculum.penalty_anneal_steps
        self.env.set_penalty_scale(min(1.0, self.agent_steps / anneal) if anneal > 0 else 1.0)
        self.env.config.obstacle_density = scheduled_density(cfg, self.agent_steps)
        if self.replay is not None and self.recent:
            air = [r["train/time_in_air"] for r in self.recent if "train/time_in_air" in r]
            self.replay.active = bool(air) and sum(air) / len(air) >= cfg.replay.min_time_in_air
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, self.agent_steps)

    def evaluate(self) -> dict[str, Any]:
        cfg = self.config
        env_cfg = dataclasses.replace(cfg.env, obstacle_density=scheduled_density(cfg, self.agent_steps))
        metrics = evaluate_policy(self.policy, env_cfg, cfg.eval.episodes, seed=10_000 + cfg.seed, record=0).metrics
        self.policy.train()
        self.last_eval = {k: metrics[k] for k in HEADLINE}
        if (self.competence is None and metrics["success_rate"] >= cfg.eval.success_target
                and metrics["collision_rate"] <= cfg.eval.collision_target):
            self.competence = {"train_time_s": self.train_time, "agent_steps": float(self.agent_steps),
                               **self.last_eval}
        return {f"eval/{k}": v for k, v in self.last_eval.items()}

    # --------------------------------------------------------------------------------------- run
    def train_step(self) -> dict[str, Any]:
        """One rollout and one PPO update; returns everything worth logging about them."""
        steps_per_update = self.config.ppo.rollout_steps * self.env.num_envs * self.env.drones * self.ranks.world_size
        started = time.perf_counter()
        self.apply_curriculum()
        record = self.collect()
        collected = time.perf_counter()
        record.update(self.update())
        self.agent_steps += steps_per_update
        self.updates += 1
        elapsed = time.perf_counter() - started
        self.train_time += elapsed
        record.update(agent_steps_per_s=steps_per_update / elapsed,
                      rollout_fraction=(collected - started) / elapsed, train_time_s=self.train_time,
                      penalty_scale=float(self.env.penalty_scale), lr=self.optimizer.param_groups[0]["lr"],
                      replay_size=float(self.replay.size) if self.replay is not None else 0.0)
        if any(k.startswith("train/") for k in record):
            self.recent.append({k: v for k, v in record.items() if k.startswith("train/")})
            record.update(window_means(self.recent))
        return record

    def run(self, log: RunLog | NullLog) -> None:
        """Train until `total_steps`; on Ctrl-C or SIGTERM save a checkpoint and raise TrainingInterrupted.

        The first signal lets the current update finish on every rank, then all save and stop; a second
        one stops at once (a single process still saves; ranks keep their last periodic checkpoint).
        """
        cfg, ranks = self.config, self.ranks
        last_save = time.monotonic()
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while self.agent_steps < cfg.total_steps:
                record = self.train_step()
                if ranks.is_main and cfg.eval.every_s > 0 and self.train_time >= self.next_eval:
                    record.update(self.evaluate())
                    self.next_eval = self.train_time + cfg.eval.every_s
                log.update(self.agent_steps, record)
                due = ranks.is_main and time.monotonic() - last_save >= cfg.checkpoint_every_s
                stop, save = (flag > 0 for flag in ranks.sum(torch.tensor(
                    [float(self.stop_requested), float(due)], device=ranks.collective_device)).tolist())
                if stop:
                    raise self._save_and_stop()
                if save:
                    self.save()
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            if not ranks.distributed:
                raise self._save_and_stop() from None
            raise TrainingInterrupted("interrupted twice: stopped at once; --resume continues from the last "
                                      "periodic checkpoint") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if ranks.is_main and cfg.eval.every_s > 0:
            log.update(self.agent_steps, self.evaluate())
        self.save()
        if self.out is not None and ranks.is_main:
            save_checkpoint(self.out / FINAL, self.payload())

    def _save_and_stop(self) -> TrainingInterrupted:
        self.save()
        return TrainingInterrupted(f"interrupted at agent step {self.agent_steps:,}; checkpoint saved, "
                                   "continue with --resume")

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True


def window_means(recent: deque[dict[str, float]]) -> dict[str, float]:
    """Episode metrics averaged over the last updates, weighted by their episode counts."""
    total = sum(r.get("train/episodes", 0.0) for r in recent)
    keys = {k for r in recent for k in r if k != "train/episodes"}
    return {k: sum(r.get(k, 0.0) * r.get("train/episodes", 0.0) for r in recent) / total for k in keys} if total else {}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config without what may change between resumes (the step cap and the device)."""
    env = {k: v for k, v in config["env"].items() if k != "device"}
    return {**{k: v for k, v in config.items() if k != "total_steps"}, "env": env}


def _read_or_error(path: Path) -> dict[str, Any] | CheckpointError:
    """The checkpoint, or the reason it cannot be read (so rank 0 can hand either to every rank)."""
    if not path.is_file():
        return CheckpointError(f"nothing to resume in '{path.parent}' (no {CHECKPOINT}); drop --resume to "
                               "start fresh")
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        return err


def train(config: TrainConfig, out: Path, resume: bool = False, ranks: Ranks | None = None) -> Trainer:
    """Run (or resume) training into `out`: config.yaml, metrics.jsonl, tb/, checkpoint.pt, policy.pt.

    Started by torchrun, it joins the other ranks (see distributed.py); otherwise it trains alone.
    """
    ranks = ranks if ranks is not None else ranks_from_environment(config.env.device)
    out.mkdir(parents=True, exist_ok=True)
    if not resume and ranks.is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(to_mapping(config), sort_keys=False))
    trainer = Trainer(config, out, resume=resume, ranks=ranks)
    log = (RunLog(out, config.total_steps, trainer.agent_steps, purge_step=trainer.agent_steps if resume else None)
           if ranks.is_main else NullLog())
    with log:
        for text in trainer.messages:
            log.message(text)
        trainer.run(log)
    return trainer
