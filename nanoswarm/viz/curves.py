"""Training curves: a run's TensorBoard scalars (RUN/tb, written by training.runlog) as one PNG, for the
README and for a glance without starting TensorBoard. Each panel is one question about the run (is it
learning, does it arrive, does it collide, is PPO healthy, how fast); a scalar the run did not log leaves
its panel saying so rather than failing, since runs differ (evaluation off, older versions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from nanoswarm.viz.errors import RenderError
from nanoswarm.viz.figures import DPI

# (panel title, y label, tags drawn in it, y scale); losses can be negative and span decades: symlog
PANELS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("episode reward", "mean reward per step", ("reward",), "linear"),
    ("success rate", "fraction of drones", ("train/success_rate", "eval/success_rate"), "linear"),
    ("collision rate", "fraction of drones", ("train/collision_rate", "eval/collision_rate"), "linear"),
    ("final distance to goal", "m", ("train/final_distance_m", "eval/final_distance_m"), "log"),
    ("PPO losses", "loss", ("policy_loss", "value_loss"), "symlog"),
    ("throughput", "agent-steps/s", ("agent_steps_per_s",), "linear"),
)
SYMLOG_LINEAR_RANGE = 1e-3
TREND_POINTS = 20       # the trend averages over about 1/20 of a series (the raw values are drawn faintly)
MAX_SMOOTHING = 0.95
FEW_POINTS = 20         # a series this short (evaluations) is drawn with markers


def read_scalars(run: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of the run's TensorBoard logs: tag -> (agent steps, values), in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow to import

    tb = Path(run) / "tb"
    if not tb.is_dir():
        raise RenderError(f"'{run}' has no TensorBoard folder tb/; give a run folder written by `nanoswarm train`")
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})   # 0: keep every point
    acc.Reload()
    scalars = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        steps = np.array([e.step for e in events], dtype=np.int64)
        order = np.argsort(steps, kind="stable")
        scalars[tag] = (steps[order], np.array([e.value for e in events], dtype=np.float64)[order])
    if not scalars:
        raise RenderError(f"'{tb}' holds no scalars yet; train longer (the first update logs them)")
    return scalars


def smooth(values: np.ndarray) -> np.ndarray:
    """The trend of a noisy series: an exponential moving average over about a twentieth of its points,
    debiased at the start as TensorBoard's smoothing is (a short series is drawn as it is)."""
    weight = float(np.clip(1.0 - TREND_POINTS / len(values), 0.0, MAX_SMOOTHING))
    out = np.empty_like(values)
    average = 0.0
    for i, v in enumerate(values):
        average = weight * average + (1.0 - weight) * v
        out[i] = average / (1.0 - weight ** (i + 1))
    return out


def plot_training_curves(run: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write the run's curves to `out` (default RUN/curves.png); returns its path."""
    run = Path(run)
    scalars = read_scalars(run)
    fig = Figure(figsize=(15, 8), dpi=DPI)
    for i, (name, ylabel, tags, scale) in enumerate(PANELS):
        ax = fig.add_subplot(2, 3, i + 1)
        present = [tag for tag in tags if tag in scalars]
        for tag in present:
            steps, values = scalars[tag]
            line, = ax.plot(steps, smooth(values), lw=1.5, label=tag, marker="o" if len(steps) <= FEW_POINTS else None,
                            ms=3)
            ax.plot(steps, values, lw=0.7, alpha=0.3, color=line.get_color())
        if present:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"not logged ({', '.join(tags)})", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
        if present and scale == "symlog":
            ax.set_yscale("symlog", linthresh=SYMLOG_LINEAR_RANGE)
        elif present:
            ax.set_yscale(scale)
        ax.set(title=name, xlabel="agent steps", ylabel=ylabel)
    fig.suptitle(title if title is not None else f"training run {run.resolve().name}")
    fig.tight_layout()
    out = run / "curves.png" if out is None else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
