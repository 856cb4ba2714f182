"""`nanoswarm export`: one command from a checkpoint to verified ONNX, C, MCU numbers and the Crazyflie app,
with every number of the issue in report.json and a failed check never passed off as success."""

from __future__ import annotations

import json

import pytest

from nanoswarm.cli import main
from nanoswarm.export.pipeline import C_TOLERANCE, ONNX_TOLERANCE, ExportOptions, check_report, export_policy
from nanoswarm.training.train import FINAL, train

from conftest import tiny_config

REPORT_KEYS = ("params", "max_abs_err_onnx", "max_abs_err_c_host", "max_abs_err_c_mcu", "cortex_m4_instructions",
               "flash_bytes", "ram_bytes")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(tiny_config(total_steps=96), out)
    return out / FINAL


def test_export_writes_every_artefact_and_the_issues_report(checkpoint, tmp_path):
    report = export_policy(checkpoint, tmp_path, ExportOptions(checks=300, mcu_samples=8))
    for name in ("policy.onnx", "c/policy.c", "c/policy.h", "crazyflie_app/src/policy.c", "report.json"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "report.json").read_text()) == report
    for key in REPORT_KEYS:
        assert report[key] >= 0, key
    assert report["max_abs_err_onnx"] <= ONNX_TOLERANCE
    assert report["max_abs_err_c_host"] <= C_TOLERANCE and report["max_abs_err_c_mcu"] <= C_TOLERANCE
    assert report["observations_checked"] == {"random": 300, "recorded": 300}
    assert report["double_precision_symbols"] == []
    assert report["flash_bytes"] >= 4 * report["params"]      # the weights are in flash, as float32
    assert report["ram_bytes"] == sum(report["sections"][k] for k in ("data", "bss", "stack"))


def test_a_report_beyond_tolerance_or_with_double_precision_fails():
    good = {"max_abs_err_onnx": 1e-7, "max_abs_err_c_host": 1e-6, "max_abs_err_c_mcu": 1e-6,
            "double_precision_symbols": []}
    assert check_report(good) == []
    assert "ONNX" in check_report({**good, "max_abs_err_onnx": 1e-3})[0]
    assert "Cortex-M4F" in check_report({**good, "max_abs_err_c_mcu": 1e-2})[0]
    assert "__aeabi_dmul" in check_report({**good, "double_precision_symbols": ["__aeabi_dmul"]})[0]


def test_export_cli_without_the_mcu_writes_json(checkpoint, tmp_path):
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "x"), "--checks", "100", "--no-mcu",
                 "--no-app", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert "max_abs_err_c_mcu" not in report and "crazyflie_app" not in report
    assert report["max_abs_err_c_host"] <= C_TOLERANCE


def test_export_of_a_corrupt_checkpoint_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "corrupt" in capsys.readouterr().out
