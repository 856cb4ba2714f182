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
from nanoswarm.training.checkpoint import CheckpointError
from nanoswarm.training.train import TrainingInterrupted

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

    config = bench_config(args.drones_per_swarm, args.obstacle_density, args.envs, args.device)
    if args.profile:
        print(profile_step(config, compile=not args.no_compile))
        return 0
    result = bench_sim(config, steps=args.steps, repeats=args.repeats, compile=not args.no_compile)
    rows = dataclasses.asdict(result)
    shown = {k: v for k, v in rows.items() if k != "agent_steps_per_s_all"}
    console.print(_table("nanoswarm bench sim", shown))
    _write_json(args.json, rows)
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from nanoswarm.training.bench import bench_train
    from nanoswarm.training.config import load_train_config

    config = load_train_config(args.config)
    if args.envs is not None:
        config.env.num_envs = args.envs
    if args.device is not None:
        config.env.device = args.device
    if args.epochs is not None:
        config.ppo.epochs = args.epochs
    config.compile = not args.no_compile
    config.seed = args.seed
    result = bench_train(config, Path(args.config).stem, updates=args.updates, repeats=args.repeats)
    rows = dataclasses.asdict(result)
    console.print(_table("nanoswarm bench train", {k: v for k, v in rows.items() if k != "agent_steps_per_s_all"}))
    _write_json(args.json, rows)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nanoswarm.sim.demo import run_demo

    metrics = run_demo(num_envs=args.envs, drones=args.drones, seconds=args.seconds, seed=args.seed)
    console.print(_table("nanoswarm demo: geometric controller, formation change", metrics))
    _write_json(args.json, metrics)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from nanoswarm.training.config import load_train_config
    from nanoswarm.training.train import train

    config = load_train_config(args.config)
    if args.total_steps is not None:
        config.total_steps = args.total_steps
    if args.device is not None:
        config.env.device = args.device
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    trainer = train(config, out, resume=args.resume)
    console.print(f"trained {trainer.agent_steps:,} agent steps in {trainer.train_time:.0f} s; "
                  f"policy in {out / 'policy.pt'}")
    if trainer.last_eval:
        console.print(_table("evaluation at the end of training", trainer.last_eval))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from nanoswarm.training.evaluate import HEADLINE, evaluate_policy, eval_env_config
    from nanoswarm.training.plots import plot_trajectories
    from nanoswarm.training.checkpoint import load_policy

    policy, data = load_policy(args.checkpoint)
    env_config = eval_env_config(data, scenario=args.scenario, drones=args.drones,
                                 obstacle_density=args.obstacle_density, device=args.device)
    result = evaluate_policy(policy.to(env_config.device), env_config, args.episodes, seed=args.seed)
    metrics = {"checkpoint": str(args.checkpoint), **result.metrics}
    console.print(_table(f"nanoswarm eval: {env_config.scenario}",
                         {k: metrics[k] for k in (*HEADLINE, "episodes", "drones_per_swarm")}))
    plot = args.plot or str(Path(args.json).with_suffix(".png") if args.json else
                            Path("runs/eval") / f"{Path(args.checkpoint).stem}_{env_config.scenario}.png")
    plot_trajectories(result.trajectories, plot, title=f"{Path(args.checkpoint).name}: {env_config.scenario}")
    console.print(f"trajectory plot: {plot}")
    _write_json(args.json, metrics)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanoswarm", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    demo = verbs.add_parser("demo", help="fly a simulated swarm through formation changes and print its metrics")
    demo.add_argument("--envs", type=int, default=16, help="swarms flown side by side")
    demo.add_argument("--drones", type=int, default=8, help="drones per swarm")
    demo.add_argument("--seconds", type=float, default=15.0, help="flight time")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", help="also write the metrics to this JSON file")
    demo.set_defaults(run=cmd_demo)

    train = verbs.add_parser("train", help="train a swarm policy with PPO (resumable; TensorBoard logs in OUT/tb)")
    train.add_argument("config", help="a training config YAML, or the name of a ready-made one "
                                      "(single, swarm8, swarm8_obstacles, swarm32)")
    train.add_argument("--out", help="run folder (default runs/CONFIG_NAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--total-steps", type=int, help="stop after this many agent steps (overrides the config)")
    train.add_argument("--device", help="cpu or cuda (overrides env.device)")
    train.set_defaults(run=cmd_train)

    ev = verbs.add_parser("eval", help="fly a checkpoint's deterministic policy and report the anchors' metrics")
    ev.add_argument("checkpoint", help="a policy.pt or checkpoint.pt")
    ev.add_argument("--scenario", help="scenario to fly (default: the one it was trained on)")
    ev.add_argument("--episodes", type=int, default=100)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--drones", type=int, help="drones per swarm (default: as trained)")
    ev.add_argument("--obstacle-density", type=float, help="column density for --scenario obstacles")
    ev.add_argument("--device", help="cpu or cuda")
    ev.add_argument("--plot", help="trajectory plot PNG (default next to --json, else runs/eval/)")
    ev.add_argument("--json", help="also write the metrics to this JSON file")
    ev.set_defaults(run=cmd_eval)

    bench = verbs.add_parser("bench", help="benchmarks (results belong in BENCHMARKS.md)")
    targets = bench.add_subparsers(dest="target", required=True)
    sim = targets.add_parser("sim", help="simulator agent-steps/s at the control rate, everything included")
    sim.add_argument("--device", default="cpu", help="cpu or cuda")
    sim.add_argument("--drones-per-swarm", type=int, default=8)
    sim.add_argument("--obstacle-density", type=float, default=0.0)
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
    return parser


# Expected failures: one line for the user and an exit code, never a traceback.
FAILURES: tuple[tuple[type[BaseException], str, int], ...] = (
    (ConfigError, "[red]configuration error:[/red]", 2),
    (CheckpointError, "[red]checkpoint error:[/red]", 2),
    (FloatingPointError, "[red]non-finite values:[/red]", 3),
    (TrainingInterrupted, "[yellow]stopped:[/yellow]", 130),
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
