"""Distillation: the student learns the teacher's actions on the states it visits itself (DAgger), stays
within its parameter budget, and is reported side by side with its teacher on the same episodes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from nanoswarm.cli import main
from nanoswarm.config import ConfigError
from nanoswarm.policies import PolicyConfig
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.training import checkpoint as ckpt
from nanoswarm.training.dagger import DaggerConfig, fly_and_label
from nanoswarm.training.distill import DistillConfig, distill, load_distill_config, make_student
from nanoswarm.training.evaluate import eval_env_config
from nanoswarm.training.train import FINAL, train

from conftest import tiny_config

STUDENT = PolicyConfig(hidden=6, head=(12,), critic="local", critic_hidden=4)


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    """A teacher whose actions vary strongly with the state (an untrained head is nearly constant, which
    any student imitates at once): the tiny run's policy with its output layer scaled up."""
    out = tmp_path_factory.mktemp("teacher")
    train(tiny_config(total_steps=96), out)
    policy, data = ckpt.load_policy(out / FINAL)
    with torch.no_grad():
        policy.actor.mean.weight.mul_(60.0)
    ckpt.save_checkpoint(out / "teacher.pt", {**data, "policy": policy.state_dict()})
    return out / "teacher.pt"


def small_config(**changes) -> DistillConfig:
    dagger = DaggerConfig(num_envs=4, iterations=4, rollout_steps=10, beta_decay=0.5, buffer_size=4096, epochs=20,
                          batch_size=64, learning_rate=1e-2)
    config = DistillConfig(policy=STUDENT, dagger=dagger, eval_episodes=2, compile=False)
    return replace(config, **changes)


def imitation_error(teacher, student, env_config, seed: int) -> float:
    env = SwarmEnv(replace(env_config, num_envs=16, seed=seed))
    obs = env.reset(seed)
    errors = []
    with torch.inference_mode():
        for _ in range(10):
            errors.append((teacher.deterministic_action(obs) - student.deterministic_action(obs)).abs().mean())
            obs = env.step(student.deterministic_action(obs)).observation
    return float(torch.stack(errors).mean())


def test_student_learns_the_teachers_actions_on_states_it_flies_to(teacher_path):
    teacher, data = ckpt.load_policy(teacher_path)
    env_config = eval_env_config(data)
    untrained = make_student(teacher, STUDENT, float(data["hover_action"]))
    result = distill(teacher_path, small_config(), log=lambda _: None)
    before = imitation_error(teacher, untrained, env_config, seed=11)
    after = imitation_error(teacher, result.student, env_config, seed=11)
    assert after < 0.5 * before, (before, after)
    assert result.report["history"][-1]["rows"] == 4 * 10 * 4 * 3   # every visited drone-step was labelled


@pytest.mark.parametrize("beta, who", [(0.0, "student"), (1.0, "teacher")])
def test_the_mixture_flies_the_student_or_the_teacher_as_beta_says(teacher_path, beta, who):
    """beta 0 is pure DAgger (the student flies); beta 1 flies the teacher. Either way the labels are the
    teacher's actions on the observations actually visited."""
    teacher, data = ckpt.load_policy(teacher_path)
    student = make_student(teacher, STUDENT, float(data["hover_action"]))
    env_config = replace(eval_env_config(data), num_envs=3, seed=5)
    env = SwarmEnv(env_config)
    seen, labels, _ = fly_and_label(env, env.reset(5), teacher, student, beta, 6, torch.Generator().manual_seed(0))

    reference = SwarmEnv(env_config)
    obs, expected = reference.reset(5), []
    pilot = student if who == "student" else teacher
    with torch.inference_mode():
        for _ in range(6):
            expected.append(obs.reshape(-1, obs.shape[-1]))
            obs = reference.step(pilot.deterministic_action(obs)).observation
    assert torch.equal(seen, torch.cat(expected))
    with torch.inference_mode():
        assert torch.equal(labels, teacher.deterministic_action(seen.reshape(18, 3, -1)).reshape(-1, 4))


def test_a_student_over_its_parameter_budget_is_refused(teacher_path):
    with pytest.raises(ConfigError, match="max_params"):
        distill(teacher_path, small_config(max_params=100), log=lambda _: None)


def test_ready_made_student_configs_fit_the_deployable_budget():
    for name in ("tiny_attention", "tiny_mlp"):
        assert load_distill_config(name).max_params <= 3000
    with pytest.raises(ConfigError, match="tiny_attention"):
        load_distill_config("no_such_student")


def test_distill_cli_writes_a_loadable_student_and_a_side_by_side_report(teacher_path, tmp_path):
    config = tmp_path / "student.yaml"
    config.write_text("policy: {actor: deepsets, hidden: 6, head: [12], critic: local, critic_hidden: 4}\n"
                      "dagger: {num_envs: 4, iterations: 2, rollout_steps: 5, batch_size: 64, buffer_size: 4096}\n")
    out = tmp_path / "student"
    assert main(["distill", str(teacher_path), "--config", str(config), "--out", str(out), "--episodes", "2",
                 "--json", str(tmp_path / "r.json")]) == 0
    student, data = ckpt.load_policy(out / "policy.pt")
    assert student.config.actor == "deepsets" and data["distill"]["config"]["dagger"]["iterations"] == 2
    report = json.loads((out / "report.json").read_text())
    row = report["scenarios"]["mix"]
    assert set(row["teacher"]) == set(row["student"]) >= {"success_rate", "collision_rate", "final_distance_m"}
    assert report["student_params"] < report["teacher_params"]
