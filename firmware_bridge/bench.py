"""How the flight bridge keeps up: a swarm of virtual drones flown through the whole bridge, with
telemetry and onboard-mode goal streams at high rates.

The virtual swarm runs in a child process, so the CPU the bridge uses (its loop, cflib's threads, the
senders) is measured apart from the simulator's. The drones fly the onboard mode with a shipped policy
exported to C (the virtual drones run the app's own code): take off, hold for `hold_s` while every drone
gets its goal packet at `command_hz` and sends its state at `telemetry_hz`, land. Over loopback UDP there
is no radio, so the numbers are the laptop's side only (crtp.md section 7 has the radio's limits).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanoswarm.config import from_mapping
from nanoswarm.firmware_bridge.fly import run_fly
from nanoswarm.firmware_bridge.manifest import SwarmManifest
from nanoswarm.firmware_bridge.mission import Mission

VIRTUAL_READY_S = 180.0      # compiling the app for the child's virtual drones takes a while on a cold cache


@dataclass
class FlyBenchResult:
    drones: int
    telemetry_hz_asked: float
    command_hz_asked: float
    loop_hz_asked: float
    hold_s: float
    completed: bool
    telemetry_hz_mean: float          # state samples per drone and second over the flight
    telemetry_hz_min: float
    command_hz_mean: float            # goal packets per drone and second while streaming
    loop_ms_p50: float                # work time of a bridge loop cycle
    loop_ms_p99: float
    loop_late_cycles: int
    bridge_cpu_percent: float         # the bridge's process during the flight loop, % of one core
    virtual_cpu_percent: float        # the virtual swarm's process over the whole run, % of one core
    virtual_realtime: float           # simulated seconds per wall second (below 1: the simulator fell behind,
                                      # and its telemetry with it, since log periods run on the drones' clock)
    cpu_cores: int
    log_dir: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def grid_starts(n: int, spacing: float = 0.6) -> list[list[float]]:
    """n starts on the floor in a centred grid `spacing` apart."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    return [[(i % cols - (cols - 1) / 2) * spacing, (i // cols - (rows - 1) / 2) * spacing, 0.0] for i in range(n)]


def export_for_bench(checkpoint: str, out: Path) -> Path:
    """The shipped checkpoint as ONNX and generated C in `out` (no verification runs: a benchmark input)."""
    from nanoswarm.export.codegen import generate_c
    from nanoswarm.export.onnx_export import action_metadata, export_onnx
    from nanoswarm.sim.params import load_params
    from nanoswarm.training.checkpoint import file_digest, load_policy, resolve_checkpoint
    from nanoswarm.training.evaluate import eval_env_config

    source = resolve_checkpoint(checkpoint)
    policy, data = load_policy(source)
    model = export_onnx(policy, out / "policy.onnx", source_sha256=file_digest(source),
                        action_meta=action_metadata(load_params(eval_env_config(data).params)))
    generate_c(model, out / "c")
    return out


def _serve(n: int, policy_dir: str, arena: str, base_port: int, starts: list[list[float]], ready, done,
           clocks) -> None:
    """The child process: serve the virtual swarm until `done`; report its clock against the wall clock."""
    from nanoswarm.firmware_bridge.virtual import VirtualSwarm

    with VirtualSwarm(n, policy_dir=Path(policy_dir), arena=arena, base_port=base_port,
                      start_positions=np.array(starts)) as swarm:
        start = (swarm.now(), time.monotonic())
        ready.set()
        done.wait()
        clocks.put((swarm.now() - start[0], time.monotonic() - start[1]))


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_fly(drones: int = 16, telemetry_hz: float = 100.0, command_hz: float = 100.0, hold_s: float = 10.0,
              policy: str = "swarm8", arena: str = "room10", base_port: int = 19850, log_dir: Path | None = None
              ) -> FlyBenchResult:
    """Fly `drones` virtual drones (in a child process) through the bridge and report its rates and costs.
    The default arena is the one the shipped policies were trained in."""
    starts = grid_starts(drones, spacing=0.8)
    manifest = from_mapping(SwarmManifest, {
        "name": f"bench{drones}", "arena": arena, "telemetry_hz": telemetry_hz, "connect_timeout_s": 10.0,
        "connect_retries": 2,
        "drones": [{"id": i + 1, "uri": f"udp://127.0.0.1:{base_port + i}", "start": s} for i, s in enumerate(starts)]})
    mission = from_mapping(Mission, {
        "name": "hold", "mode": "onboard", "command_hz": command_hz, "loop_hz": 100.0, "goal_tolerance": 0.3,
        "safety": {"preflight_timeout_s": 10.0},
        "steps": [{"action": "takeoff", "height": 1.0, "duration_s": 2.0},
                  {"action": "hold", "duration_s": hold_s}, {"action": "land", "duration_s": 2.0}]})
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nanoswarm_bench_fly_") as work:
        policy_dir = export_for_bench(policy, Path(work))
        ready, done, clocks = context.Event(), context.Event(), context.Queue()
        child = context.Process(target=_serve, args=(drones, str(policy_dir), arena, base_port, starts, ready, done,
                                                     clocks), daemon=True)
        child.start()
        try:
            deadline = time.monotonic() + VIRTUAL_READY_S
            while not ready.wait(0.2):
                if not child.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the virtual swarm's process did not start (exit code {child.exitcode})")
            child_cpu, wall = _cpu_seconds(child.pid), time.monotonic()
            summary = run_fly(manifest, mission, log_dir or Path(work) / "flight", toc_cache=Path(work) / "toc")
            child_cpu, wall = _cpu_seconds(child.pid) - child_cpu, time.monotonic() - wall
        finally:
            done.set()
        sim_s, sim_wall_s = clocks.get(timeout=10.0)
        child.join(timeout=10.0)
    return FlyBenchResult(
        drones=drones, telemetry_hz_asked=telemetry_hz, command_hz_asked=command_hz, loop_hz_asked=mission.loop_hz,
        hold_s=hold_s, completed=summary.completed, telemetry_hz_mean=summary.telemetry_hz,
        telemetry_hz_min=summary.telemetry_hz_min, command_hz_mean=summary.stream_hz.get("app", float("nan")),
        loop_ms_p50=summary.loop_ms_p50, loop_ms_p99=summary.loop_ms_p99, loop_late_cycles=summary.loop_late_cycles,
        bridge_cpu_percent=summary.cpu_percent, virtual_cpu_percent=100.0 * child_cpu / wall,
        virtual_realtime=sim_s / sim_wall_s,
        cpu_cores=os.cpu_count() or 0, log_dir=summary.log_dir)
