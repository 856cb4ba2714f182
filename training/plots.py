"""The one-sheet picture of evaluated episodes: per recorded episode, the top view and the distance to goal,
drawn by the same panels as the evaluation report (nanoswarm.viz)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from nanoswarm.training.evaluate import Trajectories
from nanoswarm.viz.figures import DPI, PANEL_INCHES, draw_goal_distance, draw_top_view


def plot_trajectories(traj: Trajectories, path: str | Path, title: str = "") -> Path:
    """One row per recorded episode: top view (columns grey, starts o, goals x) and distance to goal."""
    records = traj.records()
    fig = Figure(figsize=(2 * PANEL_INCHES[0], PANEL_INCHES[1] * len(records)), dpi=DPI)
    for e, rec in enumerate(records):
        draw_top_view(fig.add_subplot(len(records), 2, 2 * e + 1), rec)
        draw_goal_distance(fig.add_subplot(len(records), 2, 2 * e + 2), rec)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
