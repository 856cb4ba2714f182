"""Distillation: a tiny student imitates a trained teacher on the states the student itself visits (DAgger,
see `dagger.py`), then both fly the same evaluation episodes side by side.

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
from nanoswarm.training.dagger import DaggerConfig, run_dagger
from nanoswarm.training.evaluate import HEADLINE, eval_env_config, evaluate_policy

STUDENT_CONFIG_DIR = CONFIG_DIR / "students"


@dataclass
class DistillConfig:
    """The student's size and the DAgger schedule. The environment is the teacher's own."""

    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(hidden=8, head=(16,), critic="local",
                                                                      critic_hidden=8))
    dagger: DaggerConfig = field(default_factory=DaggerConfig)
    eval_episodes: int = 64
    eval_scenarios: tuple[str, ...] = ()   # scenarios to compare teacher and student on; () is the teacher's own
    max_params: int = 3000             # the deployable budget: refused above it, so a report never hides it
    seed: int = 0
    compile: bool = True               # fit through torch.compile (needs a C++ compiler)

    def validate(self) -> None:
        self.policy.validate()
        self.dagger.validate()
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


@dataclass
class DistillResult:
    student: SwarmPolicy
    report: dict[str, Any]


def make_student(teacher: SwarmPolicy, config: PolicyConfig, hover_action: float) -> SwarmPolicy:
    """A student with the teacher's layout and a frozen copy of its observation normalisation."""
    student = SwarmPolicy(teacher.layout, config, hover_action)
    student.obs_norm.load_state_dict(teacher.obs_norm.state_dict())
    return student


def distill(teacher_path: str | Path, config: DistillConfig, out: Path | None = None,
            log: Any = print) -> DistillResult:
    """Distil the teacher checkpoint into a student; write `policy.pt`, `report.json` and `config.yaml` to `out`."""
    config.validate()
    source = resolve_checkpoint(teacher_path)
    teacher, data = load_policy(source)
    teacher.eval()
    hover = float(data.get("hover_action", 0.0))
    student = make_student(teacher, config.policy, hover)
    params = count_parameters(student.actor)
    require(params <= config.max_params, "policy",
            f"the student's actor has {params} parameters, above max_params={config.max_params}; shrink hidden/head")
    torch.manual_seed(config.seed)
    env_config = replace(eval_env_config(data), num_envs=config.dagger.num_envs, seed=config.seed)
    start = time.perf_counter()
    history = run_dagger(teacher, student, SwarmEnv(env_config), config.dagger, config.seed, update_norm=False,
                         log=log, compile=config.compile)
    distill_s = time.perf_counter() - start
    report = compare(teacher, student, env_config, config.eval_scenarios, config.eval_episodes, config.seed)
    report.update(teacher=str(teacher_path), teacher_sha256=file_digest(source),
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
