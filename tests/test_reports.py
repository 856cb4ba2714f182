"""Reports: `nanoswarm eval` and a logged flight each leave report.md whose images exist and whose metrics
table is there; what a flight report draws (goals, motor commands, neighbour distances) is what was flown."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import MOTOR_COMMAND
from nanoswarm.cli import main
from nanoswarm.firmware_bridge.flight_record import read_flight, write_flight_report
from nanoswarm.sim.params import load_params
from nanoswarm.viz.record import SwarmRecord

PNG = b"\x89PNG\r\n\x1a\n"


def linked_images(report) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())


def assert_images_exist(report) -> None:
    for name in linked_images(report):
        image = report.parent / name
        assert image.read_bytes()[:8] == PNG and image.stat().st_size > 5_000, name


def test_eval_writes_a_report_with_every_figure_and_the_metrics_table(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", str(tiny_checkpoint), "--episodes", "2", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    report = tmp_path / "eval" / "report.md"
    assert linked_images(report) == ["trajectories_3d.png", "top_view.png", "goal_distance.png",
                                     "neighbour_distance.png", "motors.png"]
    assert_images_exist(report)
    text = report.read_text()
    assert f"| success_rate | {metrics['success_rate']:.4g} |" in text
    assert "| scenario | swap_goals |" in text and "| drones_per_swarm | 3 |" in text


def test_flight_report_draws_the_planned_goals_and_the_logged_motor_commands(logged_flight):
    folder = logged_flight()
    (folder / "summary.json").write_text(json.dumps({"completed": True, "stream_hz": {"app": 10.0},
                                                     "log_dir": str(folder), "plot": None, "report": None}))
    report = write_flight_report(folder)
    assert "motors.png" in linked_images(report)
    assert_images_exist(report)
    text = report.read_text()
    assert "| completed | True |" in text and "| stream_hz app | 10 |" in text and "log_dir" not in text

    rec = read_flight(folder).record
    first = 0                                                    # drone 1, starting at (-1.2, -0.6, 0)
    takeoff, goals, landing = rec.sample_at(0.5), rec.sample_at(1.2), rec.sample_at(1.7)
    np.testing.assert_allclose(rec.goals[takeoff, first], [-1.2, -0.6, 1.0])      # take-off to 1 m
    np.testing.assert_allclose(rec.goals[goals, first], [-1.2, -0.6, 0.6])        # the mission's goal
    np.testing.assert_allclose(rec.goals[landing, first], [-1.2 + 0.75, -0.6, 0.0], atol=1e-9)  # below it at 1.5 s
    np.testing.assert_allclose(rec.motors[rec.t <= 2.0], MOTOR_COMMAND / 65535.0)
    np.testing.assert_allclose(rec.neighbour_distance(), 0.8)                     # the starts' spacing in x
    assert rec.contact_distance == pytest.approx(2 * load_params("crazyflie21_sysid").collision_radius)
    assert rec.quat is None                                      # attitude is logged in laptop mode only


def test_flight_report_without_motor_telemetry_says_so(logged_flight):
    folder = logged_flight(motors=False)
    report = write_flight_report(folder)
    assert "motors.png" not in linked_images(report) and not (folder / "motors.png").exists()
    text = report.read_text()
    assert "Motor commands were not logged" in text and "motor.m1-m4" in text
    assert "| summary | none: the flight did not finish (no summary.json) |" in text


def test_nearest_neighbour_distance_ignores_the_drone_itself_and_unseen_drones():
    pos = np.array([[[0.0, 0.0, 1.0], [0.3, 0.0, 1.0], [0.0, 0.4, 1.0], [np.nan, np.nan, np.nan]]])
    rec = SwarmRecord(t=np.zeros(1), pos=pos, goals=np.full_like(pos, np.nan), collision_radius=0.05,
                      names=list("abcd"))
    np.testing.assert_allclose(rec.neighbour_distance()[0, :3], [0.3, 0.3, 0.4])
    assert np.isnan(rec.goal_distance()).all() and rec.contact_distance == pytest.approx(0.1)
