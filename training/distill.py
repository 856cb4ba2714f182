"""Distillation: a tiny student imitates a trained teacher on the states the student itself visits.

Behaviour cloning on the teacher's own rollouts fails in flight: the student's small errors take it to
states the teacher never visited, where it was never taught. DAgger (Ross, Gordon and Bagnell, 2011)
fixes that by letting the student fly and asking the teacher what it would have done. Here each
iteration flies every environment with a mixture (the teacher's action with probability beta, which
decays to zero, else the student's), labels every visited observation with the teacher's
deterministic action, adds them to an aggregated dataset, and fits the student to all of it.

The student shares the teacher's observation layout and normalisation (copied, frozen), so only the
actor is learned; what is exported and flown is the student's actor.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from nanoswarm.config import ConfigError, load_config, require, to_mapping
from nanoswarm.policies import SwarmPolicy
from nanoswarm.policies.config import PolicyConfig
from nanoswarm.policies.layers import count_parameters
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.training.checkpoint import (file_digest, load_policy, policy_payload, resolve_checkpoint,
                                           save_checkpoint)
from nanoswarm.training.config import CONFIG_DIR
from nanoswarm.training.evaluate import HEADLINE, eval_env_config, evaluate_policy

STUDENT_CONFIG_DIR = CONFIG_DIR / "students"


@dataclass
class DistillConfig:
    """The student's size and the DAgger schedule. The environment is the teacher's own."""

    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(hidden=8, head=(16,), critic="local",
                                                                      critic_hidden=8))
    num_envs: int = 256
    iterations: int = 20
    rollout_steps: int = 150           # control steps flown per iteration (1.5 s at 100 Hz)
    beta_decay: float = 0.5            # teacher-action probability: 1, then times this every iteration
    buffer_size: int = 2_000_000       # aggregated observations kept (the oldest are dropped)
    epochs: int = 2                    # passes over the aggregated data per iteration
    batch_size: int = 4096
    learning_rate: float = 3e-3
    lr_final_fraction: float = 0.05    # cosine decay over the run
    eval_episodes: int = 64
    eval_scenarios: tuple[str, ...] = ()   # scenarios to compare teacher and student on; () is the teacher's own
    max_params: int = 3000             # the deployable budget: refused above it, so a report never hides it
    seed: int = 0

    def validate(self) -> None:
        self.policy.validate()
        require(self.num_envs >= 1 and self.iterations >= 1 and self.rollout_steps >= 1, "iterations",
                "num_envs, iterations and rollout_steps must be at least 1")
        require(0.0 <= self.beta_decay < 1.0, "beta_decay", "must be within [0, 1) so the student takes over")
        require(self.buffer_size >= self.batch_size >= 1, "buffer_size", "must be at least batch_size (>= 1)")
        require(self.epochs >= 1 and self.learning_rate > 0, "epochs", "epochs >= 1 and a positive learning_rate")
        require(0 < self.lr_final_fraction <= 1, "lr_final_fraction", "must be within (0, 1]")
        require(self.eval_episodes >= 1 and self.max_params >= 1, "eval_episodes", "must be at least 1")


def load_distill_config(name_or_path: str) -> DistillConfig:
    """A ready-made student config by name (training/configs/students/NAME.yaml) or a YAML path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = STUDENT_CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in STUDENT_CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(f"no ready-made student config '{name_or_path}'; choose one of {names} or a YAML path")
    return load_config(DistillConfig, path)


class AggregatedData:
    """A ring buffer of (observation, teacher action) rows: DAgger's growing dataset, bounded."""

    def __init__(self, capacity: int, obs_size: int):
        self.obs = torch.empty(capacity, obs_size)
        self.target = torch.empty(capacity, 4)
        self.size = 0
        self.cursor = 0

    def add(self, obs: torch.Tensor, target: torch.Tensor) -> None:
        n = min(obs.shape[0], self.obs.shape[0])
        rows = (self.cursor + torch.arange(n)) % self.obs.shape[0]
        self.obs[rows], self.target[rows] = obs[-n:], target[-n:]
        self.cursor = int(rows[-1]) + 1
        self.size = min(self.size + n, self.obs.shape[0])


@dataclass
class DistillResult:
    student: SwarmPolicy
    report: dict[str, Any]


def make_student(teacher: SwarmPolicy, config: PolicyConfig, hover_action: float) -> SwarmPolicy:
    """A student with the teacher's layout and a frozen copy of its observation normalisation."""
    student = SwarmPolicy(teacher.layout, config, hover_action)
    student.obs_norm.load_state_dict(teacher.obs_norm.state_dict())
    return student


def fly_and_label(env: SwarmEnv, obs: torch.Tensor, teacher: SwarmPolicy, student: SwarmPolicy, beta: float,
                  steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fly `steps` control steps with the teacher-or-student mixture (one coin per environment and step);
    returns every visited observation with the teacher's label, and the last observation."""
    seen, labels = [], []
    with torch.inference_mode():
        for _ in range(steps):
            expert = teacher.deterministic_action(obs)
            flown = student.deterministic_action(obs)
            use_expert = torch.rand(obs.shape[0], 1, 1, generator=generator) < beta
            seen.append(obs.reshape(-1, obs.shape[-1]))
            labels.append(expert.reshape(-1, 4))
            obs = env.step(torch.where(use_expert, expert, flown)).observation
    return torch.cat(seen), torch.cat(labels), obs


def fit(student: SwarmPolicy, data: AggregatedData, optimizer: torch.optim.Optimizer, epochs: int,
        batch_size: int, generator: torch.Generator) -> float:
    """Minimise the squared error of the student's action on the aggregated data; returns the last epoch's mean."""
    loss_sum = 0.0
    for _ in range(epochs):
        order = torch.randperm(data.size, generator=generator)
        loss_sum, batches = 0.0, 0
        for rows in order.split(batch_size):
            loss = (student.actor(student.obs_norm(data.obs[rows])) - data.target[rows]).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, batches = loss_sum + loss.item(), batches + 1
        loss_sum /= batches
    return loss_sum


def distill(teacher_path: str | Path, config: DistillConfig, out: Path | None = None,
            log: Any = print) -> DistillResult:
    """Distil the teacher checkpoint into a student; write `policy.pt`, `report.json` and `config.yaml` to `out`."""
    config.validate()
    teacher, data = load_policy(teacher_path)
    teacher.eval()
    hover = float(data.get("hover_action", 0.0))
    student = make_student(teacher, config.policy, hover)
    params = count_parameters(student.actor)
    require(params <= config.max_params, "policy",
            f"the student's actor has {params} parameters, above max_params={config.max_params}; shrink hidden/head")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    env_config = replace(eval_env_config(data), num_envs=config.num_envs, seed=config.seed)
    env = SwarmEnv(env_config)
    obs = env.reset(config.seed)
    env.stagger(generator)
    dataset = AggregatedData(config.buffer_size, env.obs_size)
    optimizer = torch.optim.Adam(student.actor.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.iterations, eta_min=config.learning_rate * config.lr_final_fraction)
    start = time.perf_counter()
    history = []
    for iteration in range(config.iterations):
        beta = config.beta_decay ** iteration
        seen, labels, obs = fly_and_label(env, obs, teacher, student, beta, config.rollout_steps, generator)
        dataset.add(seen, labels)
        loss = fit(student, dataset, optimizer, config.epochs, config.batch_size, generator)
        schedule.step()
        history.append({"iteration": iteration, "beta": beta, "loss": loss, "rows": dataset.size})
        log(f"iteration {iteration + 1}/{config.iterations}: beta {beta:.3f}, imitation loss {loss:.2e}, "
            f"{dataset.size:,} labelled observations")
    distill_s = time.perf_counter() - start
    report = compare(teacher, student, env_config, config.eval_scenarios, config.eval_episodes, config.seed)
    report.update(teacher=str(teacher_path), teacher_sha256=file_digest(resolve_checkpoint(teacher_path)),
                  student_params=params, teacher_params=count_parameters(teacher.actor),
                  distill_s=distill_s, history=history)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(out / "policy.pt", {**policy_payload(student, hover), "config": data["config"],
                                            "distill": {"config": to_mapping(config), "report": report}})
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return DistillResult(student, report)


def compare(teacher: SwarmPolicy, student: SwarmPolicy, env_config: EnvConfig, scenarios: tuple[str, ...],
            episodes: int, seed: int) -> dict[str, Any]:
    """Teacher and student on the same evaluation episodes (same seed) of each scenario (default: the trained one)."""
    report: dict[str, Any] = {"episodes": episodes, "seed": seed, "scenarios": {}}
    for name in scenarios or (env_config.scenario,):
        config = eval_env_config({"config": {"env": to_mapping(env_config)}}, scenario=name)
        row: dict[str, Any] = {}
        for who, policy in (("teacher", teacher), ("student", student)):
            metrics = evaluate_policy(policy, config, episodes, seed=seed, record=0).metrics
            row[who] = {k: metrics[k] for k in HEADLINE}
        row["success_gap_points"] = 100.0 * (row["teacher"]["success_rate"] - row["student"]["success_rate"])
        report["scenarios"][name] = row
    return report
