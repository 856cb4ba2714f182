"""The `nanoswarm` command: the demo flies, the benchmark writes its JSON, bad input is one clear line."""

from __future__ import annotations

import json

from nanoswarm.cli import main


def test_demo_reports_episode_metrics(tmp_path):
    out = tmp_path / "demo.json"
    assert main(["demo", "--sim-only", "--envs", "2", "--drones", "3", "--seconds", "2", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["success_rate"] <= 1.0 and 0.0 <= metrics["collision_rate"] <= 1.0
    assert metrics["time_in_air"] > 0.9          # the geometric controller keeps every drone flying
    assert metrics["final_distance_m"] >= 0.0 and metrics["agent_steps_per_s"] > 0.0


def test_bench_sim_writes_the_median_and_every_repeat(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "sim", "--envs", "4", "--drones-per-swarm", "3", "--steps", "3", "--repeats", "3",
            "--no-compile", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert len(result["agent_steps_per_s_all"]) == 3
    assert sorted(result["agent_steps_per_s_all"])[1] == result["agent_steps_per_s"]
    assert result["num_envs"] == 4 and result["drones_per_swarm"] == 3


def test_bad_configuration_is_one_line_and_exit_code_2(capsys):
    assert main(["bench", "sim", "--drones-per-swarm", "1", "--obstacle-density", "0.95", "--no-compile"]) == 2
    assert "obstacle_density" in capsys.readouterr().out
