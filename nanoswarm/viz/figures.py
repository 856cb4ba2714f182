"""The figures of a report, each drawn from `SwarmRecord`s: one panel per record, drones in the same colours
as in the videos. Each `draw_*` fills one axes, so other pictures (training.plots) compose the same panels.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from nanoswarm.viz.record import SwarmRecord, drone_colors

Draw = Callable[[Axes, SwarmRecord], None]
PANEL_INCHES = (5.5, 4.2)
DPI = 80
COLUMN_FACETS = 16       # sides of a drawn column


def column_faces(centres: np.ndarray, radius: float, height: float) -> list[np.ndarray]:
    """Side quads (4, 3) of vertical cylinders standing on the floor at `centres` (C, 2)."""
    angles = np.linspace(0.0, 2 * np.pi, COLUMN_FACETS + 1)
    ring = radius * np.stack([np.cos(angles), np.sin(angles)], -1)
    faces = []
    for c in centres:
        xy = c + ring
        for a, b in zip(xy[:-1], xy[1:]):
            faces.append(np.array([[*a, 0.0], [*b, 0.0], [*b, height], [*a, height]]))
    return faces


def setup_3d(ax: Axes, rec: SwarmRecord) -> None:
    """A 3D axes framed on the swarm (`SwarmRecord.bounds`) at true proportions, with the columns inside it."""
    low, high = rec.bounds()
    inside = np.all((rec.columns >= low[:2]) & (rec.columns <= high[:2]), axis=1)
    if inside.any():
        ax.add_collection3d(Poly3DCollection(column_faces(rec.columns[inside], rec.column_radius, high[2]),
                                             facecolor="0.6", edgecolor="none", alpha=0.3), autolim=False)
    ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), zlim=(low[2], high[2]),
           xlabel="x (m)", ylabel="y (m)", zlabel="z (m)")
    ax.set_box_aspect(tuple(high - low), zoom=1.1)


def _final_goals(rec: SwarmRecord) -> np.ndarray:
    """(M, 3) the last goal each drone was given (NaN for a drone that never had one)."""
    known = np.isfinite(rec.goals).all(axis=-1)                       # (T, M)
    last = np.where(known.any(axis=0), len(rec.t) - 1 - np.argmax(known[::-1], axis=0), 0)
    return rec.goals[last, np.arange(rec.drones)]


def draw_top_view(ax: Axes, rec: SwarmRecord) -> None:
    """Paths seen from above: columns grey, walls dark, starts o, last goals x."""
    for c in rec.columns:
        ax.add_patch(Circle((float(c[0]), float(c[1])), rec.column_radius, color="0.8"))
    if rec.room is not None:
        hx, hy = 0.5 * rec.room[0], 0.5 * rec.room[1]
        ax.plot([-hx, hx, hx, -hx, -hx], [-hy, -hy, hy, hy, -hy], color="0.3", lw=1.5, scalex=False, scaley=False)
    goals = _final_goals(rec)
    for d, color in enumerate(drone_colors(rec.drones)):
        ax.plot(rec.pos[:, d, 0], rec.pos[:, d, 1], lw=1, color=color)
        ax.plot(rec.pos[0, d, 0], rec.pos[0, d, 1], "o", color=color, ms=4)
        ax.plot(goals[d, 0], goals[d, 1], "x", color=color, ms=7)
    ax.set_aspect("equal")
    ax.set(xlabel="x (m)", ylabel="y (m)", title=rec.title)


def draw_3d(ax: Axes, rec: SwarmRecord) -> None:
    """Paths in 3D over the floor, columns as cylinders, starts o, last goals x."""
    setup_3d(ax, rec)
    goals = _final_goals(rec)
    for d, color in enumerate(drone_colors(rec.drones)):
        ax.plot(rec.pos[:, d, 0], rec.pos[:, d, 1], rec.pos[:, d, 2], lw=1, color=color)
        ax.plot(*rec.pos[0, d, :, None], "o", color=color, ms=4)
        ax.plot(*goals[d, :, None], "x", color=color, ms=7)
    ax.set_title(rec.title)


def draw_goal_distance(ax: Axes, rec: SwarmRecord) -> None:
    """Each drone's distance to its current goal, on a log scale (arrival shows as a drop by decades)."""
    dist = rec.goal_distance()
    for d, color in enumerate(drone_colors(rec.drones)):
        ax.plot(rec.t, dist[:, d], lw=1, color=color)
    ax.set_yscale("log")
    ax.set(xlabel="time (s)", ylabel="distance to goal (m)", title=rec.title)


def draw_neighbour_distance(ax: Axes, rec: SwarmRecord) -> None:
    """Each drone's distance to its nearest neighbour, with the contact distance below which two drones
    collide (twice the collision radius, centre to centre)."""
    dist = rec.neighbour_distance()
    for d, color in enumerate(drone_colors(rec.drones)):
        ax.plot(rec.t, np.where(np.isfinite(dist[:, d]), dist[:, d], np.nan), lw=1, color=color)
    ax.axhline(rec.contact_distance, color="red", lw=1.2, ls="--",
               label=f"collision: centres {rec.contact_distance:.3f} m apart (2 x {rec.collision_radius:.3f} m)")
    ax.set_ylim(bottom=0.0)
    ax.legend(fontsize=8, loc="upper right")
    ax.set(xlabel="time (s)", ylabel="nearest-neighbour distance (m)", title=rec.title)


def draw_motors(ax: Axes, rec: SwarmRecord) -> None:
    """Each drone's motor commands: the mean of its four motors as a line, their spread (the torque it asks
    for) as a band; commands pinned at 0 or 1 are saturated."""
    assert rec.motors is not None, "draw_motors needs a record with motor commands"
    for d, color in enumerate(drone_colors(rec.drones)):
        m = rec.motors[:, d]
        ax.plot(rec.t, m.mean(axis=-1), lw=1, color=color)
        ax.fill_between(rec.t, m.min(axis=-1), m.max(axis=-1), color=color, alpha=0.15, lw=0)
    ax.set_ylim(0.0, 1.0)
    ax.set(xlabel="time (s)", ylabel="motor command (fraction of full)", title=rec.title)


def panels(records: list[SwarmRecord], draw: Draw, projection: str | None = None) -> Figure:
    """One panel per record, two to a row."""
    n = len(records)
    cols, rows = min(n, 2), math.ceil(n / 2)
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows), dpi=DPI)
    for i, rec in enumerate(records):
        draw(fig.add_subplot(rows, cols, i + 1, projection=projection), rec)
    fig.tight_layout()
    return fig
