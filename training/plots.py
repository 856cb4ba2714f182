"""Pictures of evaluated episodes: the top view of the trajectories and the distance to goal over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display is needed, on CI or over ssh
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from nanoswarm.training.evaluate import Trajectories  # noqa: E402


def plot_trajectories(traj: Trajectories, path: str | Path, title: str = "") -> Path:
    """One row per recorded episode: top view (columns grey, starts o, goals x) and distance to goal."""
    n = traj.positions.shape[1]
    fig, axes = plt.subplots(n, 2, figsize=(10, 4 * n), squeeze=False)
    time_s = torch.arange(traj.positions.shape[0]) * traj.control_dt
    centres = traj.cell_centres.reshape(-1, 2)
    for e in range(n):
        top, dist = axes[e]
        for c in centres[traj.occupancy[e].reshape(-1)]:
            top.add_patch(plt.Circle((float(c[0]), float(c[1])), traj.obstacle_radius, color="0.75"))
        pos, goals = traj.positions[:, e], traj.goals[:, e]
        for d in range(pos.shape[1]):
            line, = top.plot(pos[:, d, 0], pos[:, d, 1], lw=1)
            top.plot(pos[0, d, 0], pos[0, d, 1], "o", color=line.get_color(), ms=4)
            top.plot(goals[-1, d, 0], goals[-1, d, 1], "x", color=line.get_color(), ms=7)
            dist.plot(time_s, torch.linalg.vector_norm(pos[:, d] - goals[:, d], dim=-1), lw=1,
                      color=line.get_color())
        top.set_aspect("equal")
        top.set_xlabel("x (m)")
        top.set_ylabel("y (m)")
        top.set_title(f"episode {e}: top view")
        dist.set_xlabel("time (s)")
        dist.set_ylabel("distance to goal (m)")
        dist.set_yscale("log")
        dist.set_title("distance to goal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
