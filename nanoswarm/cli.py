"""The `nanoswarm` command: one verb per step of the user's day.

Verbs that produce numbers print them as a table and, with `--json PATH`, write them for scripts and CI.
Configuration errors are reported as one clear line (exit code 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nanoswarm.config import ConfigError
from nanoswarm.export.errors import EXPORT_FAILURES
from nanoswarm.firmware_bridge.errors import BRIDGE_FAILURES
from nanoswarm.firmware_bridge.hil_errors import HIL_FAILURES
from nanoswarm.firmware_bridge.virtual.errors import VIRTUAL_FAILURES
from nanoswarm.sim.config import CONTACT_FRICTION
from nanoswarm.training.checkpoint import CheckpointError
from nanoswarm.training.train import TrainingInterrupted
from nanoswarm.viz.errors import VIZ_FAILURES

console = Console()


def _write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {path}")


def _table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
    return table


def cmd_bench_sim(args: argparse.Namespace) -> int:
    from nanoswarm.sim.bench import bench_config, bench_sim, profile_step

    config = bench_config(args.drones_per_swarm, args.obstacle_density, args.envs, args.device,
                          args.contact_friction)
    if args.profile:
        print(profile_step(config, compile=not args.no_compile))
        return 0
    result = bench_sim(config, steps=args.steps, repeats=args.repeats, compile=not args.no_compile)
    rows = dataclasses.asdict(result)
    shown = {k: v for k, v in rows.items() if k != "agent_steps_per_s_all"}
    console.print(_table("nanoswarm bench sim", shown))
    _write_json(args.json, rows)
    return 0


def _bench_train_config(args: argparse.Namespace) -> Any:
    """The training config a benchmark runs: --config with its --envs, --device and --no-compile applied."""
    from nanoswarm.training.config import load_train_config

    config = load_train_config(args.config)
    if args.envs is not None:
        config.env.num_envs = args.envs
    if args.device is not None:
        config.env.device = args.device
    config.compile = not args.no_compile
    return config


def cmd_bench_train(args: argparse.Namespace) -> int:
    from nanoswarm.training.bench import bench_train

    config = _bench_train_config(args)
    if args.epochs is not None:
        config.ppo.epochs = args.epochs
    config.seed = args.seed
    result = bench_train(config, Path(args.config).stem, updates=args.updates, repeats=args.repeats)
    rows = dataclasses.asdict(result)
    console.print(_table("nanoswarm bench train", {k: v for k, v in rows.items() if k != "agent_steps_per_s_all"}))
    _write_json(args.json, rows)
    return 0


def cmd_bench_scaling(args: argparse.Namespace) -> int:
    from nanoswarm.training.bench import bench_scaling

    result = bench_scaling(_bench_train_config(args), Path(args.config).stem, nprocs=tuple(args.nproc), updates=args.updates,
                           repeats=args.repeats)
    rows = dataclasses.asdict(result)
    shown = {k: v for k, v in rows.items() if k not in ("all_runs", "agent_steps_per_s", "speedup")}
    shown.update({f"{n} process(es): agent-steps/s": v for n, v in result.agent_steps_per_s.items()})
    shown.update({f"{n} process(es): speed-up": v for n, v in result.speedup.items()})
    console.print(_table("nanoswarm bench scaling", shown))
    _write_json(args.json, rows)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.sim_only:
        from nanoswarm.sim.demo import run_demo

        metrics = run_demo(num_envs=args.envs, drones=args.drones, seconds=args.seconds, seed=args.seed)
        console.print(_table("nanoswarm demo --sim-only: geometric controller, formation change", metrics))
        _write_json(args.json, metrics)
        return 0
    from nanoswarm.firmware_bridge.demo import run_flight_demo

    result = run_flight_demo(args.policy, Path(args.out), console=console)
    console.print()
    export_rows = {k: result.export[k] for k in ("params", "max_abs_err_onnx", "max_abs_err_c_host",
                                                 "max_abs_err_c_mcu", "cortex_m4_instructions", "flash_bytes",
                                                 "ram_bytes")}
    console.print(_table(f"1. exported {args.policy} to C (checked on host gcc and the emulated STM32F405)",
                         export_rows))
    flight = result.flight.as_dict()
    console.print(_table("2. flown onboard by 8 virtual Crazyflies through cflib: goal swap",
                         {k: flight[k] for k in ("completed", "goals_reached", "goals_asked", "min_separation_m",
                                                 "collisions", "link_losses", "duration_s")}))
    console.print(f"flight log: {result.flight.log_dir}  trajectory plot: {result.flight.plot}  "
                  f"report: {result.flight.report}")
    _write_json(args.json, {"export": result.export, "flight": flight})
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from nanoswarm.training.config import load_train_config
    from nanoswarm.training.train import train

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: give at least 1 training process")
    if args.nproc > 1:
        from nanoswarm.training.distributed import launch

        forwarded = [args.config, "--out", str(out), *(["--resume"] if args.resume else []),
                     *(["--total-steps", str(args.total_steps)] if args.total_steps is not None else []),
                     *(["--device", args.device] if args.device is not None else []),
                     *(["--seed", str(args.seed)] if args.seed is not None else [])]
        return launch(args.nproc, ["train", *forwarded])
    config = load_train_config(args.config)
    if args.total_steps is not None:
        config.total_steps = args.total_steps
    if args.device is not None:
        config.env.device = args.device
    if args.seed is not None:
        config.seed = args.seed
    trainer = train(config, out, resume=args.resume)
    if not trainer.ranks.is_main:
        return 0
    from nanoswarm.viz.curves import plot_training_curves

    console.print(f"training curves: {plot_training_curves(out)}")
    console.print(f"trained {trainer.agent_steps:,} agent steps in {trainer.train_time:.0f} s; "
                  f"policy in {out / 'policy.pt'}")
    if trainer.last_eval:
        console.print(_table("evaluation at the end of training", trainer.last_eval))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from nanoswarm.training.evaluate import HEADLINE, evaluate_policy, eval_env_config
    from nanoswarm.training.plots import plot_trajectories
    from nanoswarm.training.checkpoint import load_policy
    from nanoswarm.viz.report import write_report
    from nanoswarm.sim.env import SwarmEnv

    policy, data = load_policy(args.checkpoint)
    make_env, device = SwarmEnv, args.device
    if args.backend == "pybullet":  # imported on demand: only this backend needs pybullet
        from nanoswarm.sim.bullet.env import BulletSwarmEnv

        if device not in (None, "cpu"):
            raise ConfigError(f"--backend pybullet steps on the CPU; drop --device {device} or use --backend torch")
        make_env = BulletSwarmEnv
        device = "cpu"  # whatever device the checkpoint was trained on
    env_config = eval_env_config(data, scenario=args.scenario, drones=args.drones,
                                 obstacle_density=args.obstacle_density, device=device)
    if args.randomize is not None:
        env_config = dataclasses.replace(env_config, randomize=args.randomize)
    if args.friction is not None:
        env_config = dataclasses.replace(env_config, contact_friction=args.friction)
        env_config.validate()
    result = evaluate_policy(policy.to(env_config.device), env_config, args.episodes, seed=args.seed,
                             make_env=make_env)
    metrics = {"checkpoint": str(args.checkpoint), "backend": args.backend, "randomize": env_config.randomize,
               **result.metrics}
    console.print(_table(f"nanoswarm eval: {env_config.scenario} ({args.backend})",
                         {k: metrics[k] for k in (*HEADLINE, "episodes", "drones_per_swarm")}))
    backend = "" if args.backend == "torch" else f"_{args.backend}"
    plot = args.plot or str(Path(args.json).with_suffix(".png") if args.json else
                            Path("runs/eval") / f"{Path(args.checkpoint).stem}_{env_config.scenario}{backend}.png")
    plot_trajectories(result.trajectories, plot, title=f"{Path(args.checkpoint).name}: {env_config.scenario}")
    report = write_report(result.trajectories.records(), metrics, Path(plot).with_suffix(""),
                          f"Evaluation of {Path(args.checkpoint).name}: {env_config.scenario}")
    console.print(f"trajectory plot: {plot}  report: {report}")
    _write_json(args.json, metrics)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from nanoswarm.training.distill import distill, load_distill_config

    config = load_distill_config(args.config)
    if args.iterations is not None:
        config.dagger.iterations = args.iterations
    if args.episodes is not None:
        config.eval_episodes = args.episodes
    out = Path(args.out)
    result = distill(args.teacher, config, out, log=console.print)
    for scenario, row in result.report["scenarios"].items():
        table = Table(title=f"nanoswarm distill: {scenario} ({result.report['episodes']} episodes, same seeds)")
        table.add_column("metric")
        for who in ("teacher", "student"):
            table.add_column(who, justify="right")
        for key in row["teacher"]:
            table.add_row(key, *(f"{row[who][key]:.4g}" for who in ("teacher", "student")))
        console.print(table)
    console.print(f"student: {result.report['student_params']:,} actor parameters "
                  f"(teacher {result.report['teacher_params']:,}); {out / 'policy.pt'}")
    _write_json(args.json, result.report)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nanoswarm.export.pipeline import ExportOptions, export_policy

    options = ExportOptions(checks=args.checks, mcu_samples=args.mcu_samples, mcu=not args.no_mcu,
                            crazyflie_app=not args.no_app, seed=args.seed)
    report = export_policy(args.checkpoint, Path(args.out), options)
    shown = {k: v for k, v in report.items() if not isinstance(v, (dict, list))}
    console.print(_table(f"nanoswarm export: {args.out} (all checks passed)", shown))
    _write_json(args.json, report)
    return 0


def cmd_codegen(args: argparse.Namespace) -> int:
    import numpy as np

    from nanoswarm.export.codegen import generate_c
    from nanoswarm.export.host import compile_host, onnxruntime_actions

    out = Path(args.out)
    generated = generate_c(Path(args.model), out)
    rows: dict[str, Any] = {"model": str(args.model), "c_dir": str(out), "n_in": generated.n_in,
                            "n_out": generated.n_out, "params": generated.params,
                            "scratch_floats": generated.scratch_floats,
                            "ops": ", ".join(f"{op} {n}" for op, n in sorted(generated.ops.items()))}
    if args.verify:
        obs = np.random.default_rng(args.seed).normal(0.0, 2.0, (args.verify, generated.n_in)).astype(np.float32)
        host = compile_host(out, out / "host_build")
        rows["max_abs_err_c_host"] = float(np.abs(host(obs) - onnxruntime_actions(args.model, obs)).max())
    console.print(_table("nanoswarm codegen", rows))
    _write_json(args.json, rows)
    return 0


def cmd_hil(args: argparse.Namespace) -> int:
    from nanoswarm.firmware_bridge.hil import check_board

    result = check_board(args.port, Path(args.policy), baudrate=args.baud, n=args.n, seed=args.seed,
                         observations=Path(args.observations) if args.observations else None,
                         timeout_s=args.timeout)
    board = result["board"]
    rows = {"device": result["device"], "policy id": f"{board['policy_id']:08x}",
            "n_in / n_out": f"{board['n_in']} / {board['n_out']}", **result["bench"],
            **{k: v for k, v in result["link"].items() if not k.startswith("rtt_")}}
    console.print(_table(f"nanoswarm hil {args.port}", rows))
    _write_json(args.json, result)
    for failure in result["failures"]:
        console.print(f"[red]HIL check failed:[/red] {failure}")
    return 5 if result["failures"] else 0


def cmd_virtual_swarm(args: argparse.Namespace) -> int:
    from nanoswarm.firmware_bridge.virtual import LinkFaults, serve_main

    faults = LinkFaults(loss=args.loss, delay_s=args.delay, duplicate=args.duplicate)
    return serve_main(args.n, Path(args.policy) if args.policy else None, args.arena, args.host,
                      base_port=args.base_port, faults=faults)


def cmd_fly(args: argparse.Namespace) -> int:
    from nanoswarm.firmware_bridge.fly import run_fly

    try:
        summary = run_fly(args.swarm, args.mission, args.log, dry_run=args.dry_run, mode=args.mode,
                          policy_dir=args.policy, console=console, keys=sys.stdin,
                          virtual_base_port=args.virtual_port)
    except KeyboardInterrupt:
        console.print("[yellow]stopped (Ctrl-C)[/yellow]")
        return 130
    rows = summary.as_dict()
    shown = {k: v for k, v in rows.items() if k not in ("stream_hz", "log_dir", "plot", "report")}
    shown.update({f"stream_hz {k}": v for k, v in summary.stream_hz.items()})
    console.print(_table(f"nanoswarm fly: {summary.mission} with {summary.swarm} ({summary.mode})", shown))
    console.print(f"flight log: {summary.log_dir}  plot: {summary.plot}  report: {summary.report}")
    _write_json(args.json, rows)
    return 0 if summary.completed else 1


def cmd_render(args: argparse.Namespace) -> int:
    from nanoswarm.viz.render import render

    done = render(args.source, args.out, fps=args.fps, seconds=args.seconds, scenario=args.scenario,
                  episode=args.episode, seed=args.seed, device=args.device)
    if done.video is None:
        console.print(f"training curves: {done.path}")
    else:
        v = done.video
        console.print(f"video of the {done.kind}: {done.path} ({v.frames} frames at {v.fps} fps = {v.seconds:.1f} s, "
                      f"{v.width}x{v.height})")
    return 0


def cmd_bench_fly(args: argparse.Namespace) -> int:
    from nanoswarm.firmware_bridge.bench import bench_fly

    result = bench_fly(drones=args.drones, telemetry_hz=args.telemetry_hz, command_hz=args.command_hz,
                       hold_s=args.hold, policy=args.policy, base_port=args.base_port)
    rows = result.as_dict()
    console.print(_table("nanoswarm bench fly", rows))
    _write_json(args.json, rows)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanoswarm", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    demo = verbs.add_parser("demo", help="export a shipped policy to C and fly it onboard a virtual swarm through "
                                         "cflib (no hardware needed)")
    demo.add_argument("--policy", default="swarm8_student", help="checkpoint or shipped policy to export and fly")
    demo.add_argument("--out", default="runs/demo", help="folder for the export and the flight log")
    demo.add_argument("--sim-only", action="store_true",
                      help="instead: simulated swarms changing formation under the geometric controller")
    demo.add_argument("--envs", type=int, default=16, help="--sim-only: swarms flown side by side")
    demo.add_argument("--drones", type=int, default=8, help="--sim-only: drones per swarm")
    demo.add_argument("--seconds", type=float, default=15.0, help="--sim-only: flight time")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", help="also write the metrics to this JSON file")
    demo.set_defaults(run=cmd_demo)

    train = verbs.add_parser("train", help="train a swarm policy with PPO (resumable; TensorBoard logs in OUT/tb)")
    train.add_argument("config", help="a training config YAML, or the name of a ready-made one "
                                      "(single, swarm8, swarm8_obstacles, swarm32)")
    train.add_argument("--out", help="run folder (default runs/CONFIG_NAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--total-steps", type=int, help="stop after this many agent steps (overrides the config)")
    train.add_argument("--seed", type=int, help="random seed of the run (overrides the config; 3 seeds give the "
                                                "medians in BENCHMARKS.md)")
    train.add_argument("--device", help="cpu or cuda (overrides env.device)")
    train.add_argument("--nproc", type=int, default=1,
                       help="data-parallel training processes on this machine (torchrun; each simulates the "
                            "config's num_envs, so the batch grows N-fold)")
    train.set_defaults(run=cmd_train)

    ev = verbs.add_parser("eval", help="fly a checkpoint's deterministic policy and report the anchors' metrics")
    ev.add_argument("checkpoint", help="a policy.pt or checkpoint.pt")
    ev.add_argument("--scenario", help="scenario to fly (default: the one it was trained on)")
    ev.add_argument("--episodes", type=int, default=100)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--drones", type=int, help="drones per swarm (default: as trained)")
    ev.add_argument("--obstacle-density", type=float, help="column density for --scenario obstacles")
    ev.add_argument("--device", help="cpu or cuda")
    ev.add_argument("--backend", choices=["torch", "pybullet"], default="torch",
                    help="physics: the torch simulator, or pybullet as an independent check (CPU only)")
    ev.add_argument("--friction", type=float, help="contact friction of either backend (default 0.5, plastic on "
                                                 "plastic; 0 makes contacts that cannot spin a drone)")
    ev.add_argument("--randomize", action=argparse.BooleanOptionalAction,
                    help="domain randomisation of the airframes (default: as trained); --no-randomize flies the "
                         "nominal parameter set")
    ev.add_argument("--plot", help="trajectory plot PNG (default next to --json, else runs/eval/)")
    ev.add_argument("--json", help="also write the metrics to this JSON file")
    ev.set_defaults(run=cmd_eval)

    dist = verbs.add_parser("distill", help="distil a trained policy into a tiny student (DAgger) and compare them")
    dist.add_argument("teacher", help="the teacher: a policy.pt, or a shipped name such as swarm8")
    dist.add_argument("--config", default="tiny_attention",
                      help="student config YAML, or a ready-made one (tiny_attention, tiny_mlp)")
    dist.add_argument("--out", required=True, help="folder for the student's policy.pt and report.json")
    dist.add_argument("--iterations", type=int, help="DAgger iterations (overrides the config)")
    dist.add_argument("--episodes", type=int, help="evaluation episodes per scenario (overrides the config)")
    dist.add_argument("--json", help="also write the report to this JSON file")
    dist.set_defaults(run=cmd_distill)

    exp = verbs.add_parser("export", help="export a checkpoint to ONNX, C and the Crazyflie app, checked on "
                                          "onnxruntime, host gcc and an emulated STM32F405 (QEMU)")
    exp.add_argument("checkpoint", help="a policy.pt, or a shipped name such as swarm8_student")
    exp.add_argument("--out", required=True, help="folder for policy.onnx, c/, crazyflie_app/ and report.json")
    exp.add_argument("--checks", type=int, default=10000,
                     help="random and recorded observations (each) compared across torch, onnxruntime and C")
    exp.add_argument("--mcu-samples", type=int, default=256, help="observations run on the emulated MCU")
    exp.add_argument("--no-mcu", action="store_true", help="skip the QEMU run (no ARM toolchain needed)")
    exp.add_argument("--no-app", action="store_true", help="do not write the Crazyflie firmware app")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--json", help="also write the report to this JSON file")
    exp.set_defaults(run=cmd_export)

    cg = verbs.add_parser("codegen", help="generate policy.c / policy.h from any single-input float ONNX model")
    cg.add_argument("model", help="an ONNX model (nanoswarm export writes one)")
    cg.add_argument("--out", required=True, help="folder for policy.c and policy.h")
    cg.add_argument("--verify", type=int, default=2000, metavar="N",
                    help="compare N random observations on host gcc with onnxruntime (0: skip)")
    cg.add_argument("--seed", type=int, default=0)
    cg.add_argument("--json", help="also write the result to this JSON file")
    cg.set_defaults(run=cmd_codegen)

    vs = verbs.add_parser("virtual-swarm", help="serve N simulated Crazyflies that cflib flies over "
                                                "udp://HOST:19850+i (Ctrl-C stops them)")
    vs.add_argument("--n", type=int, default=4, help="number of drones (1-255)")
    vs.add_argument("--policy", metavar="EXPORT_DIR", help="run the nanoswarm app with this exported policy "
                    "(a folder written by `nanoswarm export`); default: the stock controller only")
    vs.add_argument("--arena", default="lab4x3", help="hardware/arenas name or YAML path")
    vs.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    vs.add_argument("--base-port", type=int, default=19850, help="drone i listens on BASE_PORT + i")
    vs.add_argument("--loss", type=float, default=0.0, help="probability that a CRTP packet is lost, each way")
    vs.add_argument("--delay", type=float, default=0.0, help="added one-way latency of CRTP packets, s")
    vs.add_argument("--duplicate", type=float, default=0.0, help="probability that a CRTP packet arrives twice")
    vs.set_defaults(run=cmd_virtual_swarm)

    fly = verbs.add_parser("fly", help="fly a swarm through a mission with cflib; --dry-run rehearses it on a "
                                       "virtual swarm on this machine")
    fly.add_argument("--swarm", required=True, help="manifest: a hardware/swarms name (cf8_lab, virtual8) or a YAML path")
    fly.add_argument("--mission", required=True, help="mission YAML, e.g. missions/goal_swap.yaml")
    fly.add_argument("--log", help="flight folder: telemetry, events, summary, plot (default runs/fly/TIME_SWARM_MISSION)")
    fly.add_argument("--dry-run", action="store_true", help="fly a virtual swarm on loopback instead of the manifest's URIs")
    fly.add_argument("--mode", choices=["stock", "onboard", "laptop"], help="control mode (default: the mission's)")
    fly.add_argument("--policy", help="export folder (nanoswarm export --out DIR): laptop mode's policy, and the one "
                                      "a dry run's virtual drones fly onboard")
    fly.add_argument("--virtual-port", type=int, default=19850, help="first UDP port of the dry run's virtual swarm")
    fly.add_argument("--json", help="also write the summary to this JSON file")
    fly.set_defaults(run=cmd_fly)

    hil = verbs.add_parser("hil", help="hardware in the loop: send observations to a board running the exported "
                                       "policy over a serial port and compare its actions with the host build")
    hil.add_argument("port", help="serial port (/dev/ttyUSB0, COM3, socket://HOST:PORT), or `host` / `qemu` to "
                                  "build the board firmware and run it here / on QEMU's STM32F405")
    hil.add_argument("--policy", required=True, help="the export folder the board was built from (or its c/)")
    hil.add_argument("--baud", type=int, default=115200, help="the board's baud rate")
    hil.add_argument("--n", type=int, default=1000, help="observations to send")
    hil.add_argument("--observations", help="a .npy file of recorded (N, n_in) observations (default: random ones)")
    hil.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each answer before retrying")
    hil.add_argument("--seed", type=int, default=0)
    hil.add_argument("--json", help="also write the result to this JSON file")
    hil.set_defaults(run=cmd_hil)

    ren = verbs.add_parser("render", help="draw a flight or a policy as a video (.gif, .mp4), or a training run's "
                                          "curves (.png)")
    ren.add_argument("source", help="a checkpoint or shipped policy name (flies one episode), a flight folder "
                                    "(nanoswarm fly --log), or a training run folder (nanoswarm train --out)")
    ren.add_argument("--out", required=True, help="FILE.gif or FILE.mp4 for a video, FILE.png for training curves")
    ren.add_argument("--fps", type=int, default=20, help="video frames per second (a GIF needs one that divides 100)")
    ren.add_argument("--seconds", type=float, help="show at most this many seconds of the flight")
    ren.add_argument("--scenario", help="checkpoint: scenario to fly (default: the one it was trained on)")
    ren.add_argument("--episode", type=int, default=0, help="checkpoint: which episode of the seed to fly")
    ren.add_argument("--seed", type=int, default=0, help="checkpoint: seed of the episodes")
    ren.add_argument("--device", help="checkpoint: cpu or cuda")
    ren.set_defaults(run=cmd_render)

    bench = verbs.add_parser("bench", help="benchmarks (results belong in BENCHMARKS.md)")
    targets = bench.add_subparsers(dest="target", required=True)
    sim = targets.add_parser("sim", help="simulator agent-steps/s at the control rate, everything included")
    sim.add_argument("--device", default="cpu", help="cpu or cuda")
    sim.add_argument("--drones-per-swarm", type=int, default=8)
    sim.add_argument("--obstacle-density", type=float, default=0.0)
    sim.add_argument("--contact-friction", type=float, default=CONTACT_FRICTION,
                     help="Coulomb coefficient of the contacts (0: frictionless, to price the friction solve)")
    sim.add_argument("--envs", type=int, default=None, help="environments (default: 65536 drones in all)")
    sim.add_argument("--steps", type=int, default=100, help="control steps per repeat")
    sim.add_argument("--repeats", type=int, default=5)
    sim.add_argument("--no-compile", action="store_true", help="measure the eager step instead")
    sim.add_argument("--profile", action="store_true", help="print where the time of a step goes instead")
    sim.add_argument("--json", help="also write the result to this JSON file")
    sim.set_defaults(run=cmd_bench_sim)
    tr = targets.add_parser("train", help="end-to-end training agent-steps/s (rollout and PPO update)")
    tr.add_argument("--config", default="swarm8", help="ready-made config name or YAML path")
    tr.add_argument("--envs", type=int, help="environments (default: the config's)")
    tr.add_argument("--device", help="cpu or cuda")
    tr.add_argument("--epochs", type=int, help="PPO epochs per update (default: the config's)")
    tr.add_argument("--updates", type=int, default=3, help="PPO updates per repeat")
    tr.add_argument("--repeats", type=int, default=3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--no-compile", action="store_true", help="eager simulator step")
    tr.add_argument("--json", help="also write the result to this JSON file")
    tr.set_defaults(run=cmd_bench_train)
    sc = targets.add_parser("scaling", help="training throughput of train --nproc N for each N, runs interleaved")
    sc.add_argument("--config", default="swarm8", help="ready-made config name or YAML path")
    sc.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    sc.add_argument("--envs", type=int, help="environments per process (default: the config's)")
    sc.add_argument("--device", help="cpu or cuda")
    sc.add_argument("--updates", type=int, default=3, help="measured PPO updates per run (after one warm-up)")
    sc.add_argument("--repeats", type=int, default=3)
    sc.add_argument("--no-compile", action="store_true", help="eager simulator step")
    sc.add_argument("--json", help="also write the result to this JSON file")
    sc.set_defaults(run=cmd_bench_scaling)
    bf = targets.add_parser("fly", help="flight bridge against virtual drones: telemetry and goal rates, loop "
                                        "latency, CPU")
    bf.add_argument("--drones", type=int, default=16)
    bf.add_argument("--telemetry-hz", type=float, default=100.0, help="state log rate per drone")
    bf.add_argument("--command-hz", type=float, default=100.0, help="onboard goal packets per drone and second")
    bf.add_argument("--hold", type=float, default=10.0, help="seconds of hovering in the measured flight")
    bf.add_argument("--policy", default="swarm8", help="shipped checkpoint the virtual drones fly onboard")
    bf.add_argument("--base-port", type=int, default=19850, help="first UDP port of the virtual swarm")
    bf.add_argument("--json", help="also write the result to this JSON file")
    bf.set_defaults(run=cmd_bench_fly)
    return parser


# Expected failures: one line for the user and an exit code, never a traceback.
FAILURES: tuple[tuple[type[BaseException], str, int], ...] = (
    (ConfigError, "[red]configuration error:[/red]", 2),
    (CheckpointError, "[red]checkpoint error:[/red]", 2),
    (FloatingPointError, "[red]non-finite values:[/red]", 3),
    (TrainingInterrupted, "[yellow]stopped:[/yellow]", 130),
    *EXPORT_FAILURES,
    *HIL_FAILURES,
    *BRIDGE_FAILURES,
    *VIRTUAL_FAILURES,
    *VIZ_FAILURES,
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except tuple(kind for kind, _, _ in FAILURES) as err:
        label, code = next((label, code) for kind, label, code in FAILURES if isinstance(err, kind))
        console.print(f"{label} {err}")
        return code


if __name__ == "__main__":
    sys.exit(main())
