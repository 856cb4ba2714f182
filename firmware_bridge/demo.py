"""The whole story in one command: a shipped policy, exported to C and checked, flown by `nanoswarm fly`
through real cflib on a virtual swarm whose drones run that C policy onboard.

This is what `make demo` shows on a machine with no Crazyflie: every part a user meets on the way from
a checkpoint to a real swarm, with the radio replaced by loopback UDP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from nanoswarm.export.pipeline import ExportOptions, export_policy
from nanoswarm.firmware_bridge.fly import FlightSummary, run_fly

DEMO_SWARM = "virtual8"
DEMO_MISSION = Path(__file__).resolve().parent.parent / "missions" / "goal_swap.yaml"


@dataclass
class DemoResult:
    export: dict[str, Any]
    flight: FlightSummary


def run_flight_demo(policy: str, out: Path, mission: Path = DEMO_MISSION, console: Console | None = None
                    ) -> DemoResult:
    """Export `policy` (a checkpoint or shipped name) into out/export, then fly `mission` onboard with it on a
    virtual swarm; the flight log and plot land in out/flight."""
    report = export_policy(policy, out / "export", ExportOptions(checks=1000, mcu_samples=32))
    summary = run_fly(DEMO_SWARM, mission, out / "flight", dry_run=True, mode="onboard",
                      policy_dir=out / "export", console=console)
    return DemoResult(report, summary)
