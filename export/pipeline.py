"""`nanoswarm export`: checkpoint → ONNX → C → Crazyflie app and serial-HIL firmware, every step checked, one report.

Each export is verified end to end, so a shipped C policy is never trusted on faith:
- ONNX against the torch policy with onnxruntime, on random and on recorded (flown) observations;
- the generated C, built with the host's gcc, against onnxruntime on the same observations;
- the same C cross-compiled for the Cortex-M4F and run on QEMU's STM32F405 against the host build's
  reference, with its instruction count, flash and RAM, and a search for double-precision code.
`report.json` in the export folder holds all of it; `ExportCheckFailed` is raised (after the report is
written, so nothing is lost) when an error exceeds its tolerance or double-precision code is found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanoswarm.export.codegen import generate_c
from nanoswarm.export.crazyflie_app import write_crazyflie_app
from nanoswarm.export.errors import ExportCheckFailed
from nanoswarm.export.host import compile_host, onnxruntime_actions
from nanoswarm.export.mcu import run_on_mcu
from nanoswarm.export.observations import random_observations, recorded_observations
from nanoswarm.export.onnx_export import action_metadata, compare_with_torch, export_onnx
from nanoswarm.firmware_bridge.hil_firmware import write_hil_firmware
from nanoswarm.policies.layers import count_parameters
from nanoswarm.sim.params import load_params
from nanoswarm.training.checkpoint import file_digest, load_policy, resolve_checkpoint
from nanoswarm.training.evaluate import eval_env_config

ONNX_TOLERANCE = 1e-5     # onnxruntime vs torch (the bound)
C_TOLERANCE = 1e-4        # generated C (host gcc, and the Cortex-M4F) vs onnxruntime


@dataclass
class ExportOptions:
    checks: int = 10_000          # random and recorded observations each, for the ONNX and host checks
    mcu_samples: int = 256        # observations run on the emulated MCU (half random, half recorded)
    mcu: bool = True              # False skips QEMU (no ARM toolchain needed)
    crazyflie_app: bool = True
    seed: int = 0


def export_policy(checkpoint: str | Path, out: Path, options: ExportOptions = ExportOptions()) -> dict[str, Any]:
    """Export and verify a checkpoint into `out` (policy.onnx, c/, crazyflie_app/, report.json); returns the report."""
    source = resolve_checkpoint(checkpoint)
    digest = file_digest(source)
    policy, data = load_policy(source)
    policy.eval()
    env_config = eval_env_config(data)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "policy.onnx"
    export_onnx(policy, model, source_sha256=digest,
                action_meta=action_metadata(load_params(env_config.params)))

    random_obs = random_observations(policy.layout, options.checks, seed=options.seed)
    recorded_obs = recorded_observations(policy, env_config, options.checks, seed=options.seed,
                                         steps=env_config.episode_steps)
    observations = np.concatenate([random_obs, recorded_obs])
    reference = onnxruntime_actions(model, observations)
    generated = generate_c(model, out / "c")
    host = compile_host(out / "c", out / "host_build")
    report: dict[str, Any] = {
        "checkpoint": str(source), "checkpoint_sha256": digest, "onnx": str(model),
        "params": count_parameters(policy.actor) - policy.actor.log_std.numel(),
        "c_weight_floats": generated.params, "scratch_floats": generated.scratch_floats,
        "observations_checked": {"random": len(random_obs), "recorded": len(recorded_obs)},
        "max_abs_err_onnx": max(compare_with_torch(policy, model, random_obs),
                                compare_with_torch(policy, model, recorded_obs)),
        "max_abs_err_c_host": float(np.abs(host(observations) - reference).max()),
    }
    if options.mcu:
        # Half random, half recorded observations spread over the flight: rows of `observations`, whose
        # onnxruntime actions are already in `reference`.
        half = options.mcu_samples // 2
        stride = max(1, len(recorded_obs) // max(1, half))
        recorded_rows = len(random_obs) + np.arange(0, len(recorded_obs), stride)[:options.mcu_samples - half]
        rows = np.concatenate([np.arange(min(half, len(random_obs))), recorded_rows])
        mcu = run_on_mcu(out / "c", observations[rows], out / "mcu")
        report.update({
            "mcu_samples": len(rows),
            "max_abs_err_c_mcu": float(np.abs(mcu.outputs - reference[rows]).max()),
            "cortex_m4_instructions": mcu.instructions_per_inference,
            "cortex_m4_instructions_max": mcu.instructions_max,
            "flash_bytes": mcu.flash_bytes, "ram_bytes": mcu.ram_bytes,
            "sections": {"text": mcu.text, "rodata": mcu.rodata, "data": mcu.data, "bss": mcu.bss,
                         "stack": mcu.stack},
            "double_precision_symbols": mcu.double_precision_symbols,
        })
    if options.crazyflie_app:
        report["crazyflie_app"] = str(write_crazyflie_app(out / "c", out / "crazyflie_app",
                                                          policy=lambda obs: host(obs[None])[0],
                                                          sense_range=env_config.obstacle_sense_range))
    report["hil_firmware"] = str(write_hil_firmware(out / "c", out / "hil"))
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    failures = check_report(report)
    if failures:
        raise ExportCheckFailed(f"{out / 'report.json'}: " + "; ".join(failures))
    return report


def check_report(report: dict[str, Any]) -> list[str]:
    """What in a report breaks the export's guarantees (empty when it holds)."""
    failures = []
    if report["max_abs_err_onnx"] > ONNX_TOLERANCE:
        failures.append(f"ONNX differs from torch by {report['max_abs_err_onnx']:.3g} > {ONNX_TOLERANCE:g}")
    for key, where in (("max_abs_err_c_host", "host gcc"), ("max_abs_err_c_mcu", "the Cortex-M4F")):
        if key in report and report[key] > C_TOLERANCE:
            failures.append(f"the C policy on {where} differs from onnxruntime by {report[key]:.3g} > {C_TOLERANCE:g}")
    if report.get("double_precision_symbols"):
        failures.append(f"double-precision code on the Cortex-M4F: {report['double_precision_symbols']}")
    return failures
