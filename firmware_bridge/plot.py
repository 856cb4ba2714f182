"""The picture of a flight, drawn afterwards from its folder alone (flight_log.py), so any logged flight,
real or rehearsed, can be drawn again: top view with the arena's walls, and altitude over time, with every
event marked where and when it happened."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display is needed, on CI or over ssh
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nanoswarm.firmware_bridge.flight_log import read_events, read_tracks  # noqa: E402
from nanoswarm.sim.arena import Arena  # noqa: E402

# Events that are routine steps of a mission are drawn faintly; the rest (safety, losses) stand out.
ROUTINE = ("phase", "connect", "preflight", "takeoff", "mission")


def plot_flight(folder: Path, arena: Arena | None = None, out: Path | None = None, title: str = "") -> Path:
    """Write `flight.png` (or `out`) for the flight logged in `folder`; returns its path."""
    folder = Path(folder)
    tracks = read_tracks(folder)
    events = read_events(folder)
    fig, (top, alt) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1, 1.3]})
    if arena is not None:
        hx, hy = 0.5 * arena.room[0], 0.5 * arena.room[1]
        top.plot([-hx, hx, hx, -hx, -hx], [-hy, -hy, hy, hy, -hy], color="0.4", lw=1.5)
    colors = {}
    for drone, track in tracks.items():
        if len(track.t) == 0:
            continue
        line, = top.plot(track.pos[:, 0], track.pos[:, 1], lw=1, label=f"{drone}")
        colors[drone] = line.get_color()
        top.plot(track.pos[0, 0], track.pos[0, 1], "o", color=line.get_color(), ms=4)
        top.plot(track.pos[-1, 0], track.pos[-1, 1], "s", color=line.get_color(), ms=4)
        alt.plot(track.t, track.pos[:, 2], lw=1, color=line.get_color(), label=f"drone {drone}")
    for event in events:
        routine = event.kind in ROUTINE
        alt.axvline(event.t, color="0.7" if routine else "red", lw=0.8, ls="--" if routine else "-")
        alt.annotate(event.kind if event.drone is None else f"{event.kind} {event.drone}", (event.t, 1.0),
                     xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=7,
                     color="0.4" if routine else "red")
        track = tracks.get(event.drone) if event.drone is not None else None
        if not routine and track is not None and len(track.t):
            k = min(int(np.searchsorted(track.t, event.t)), len(track.t) - 1)
            top.plot(track.pos[k, 0], track.pos[k, 1], "x", color="red", ms=9, mew=2)
    top.set_aspect("equal")
    top.set_xlabel("x (m)")
    top.set_ylabel("y (m)")
    top.set_title("top view (o start, s end, x event)")
    top.legend(fontsize=7, title="drone", loc="upper right")
    alt.set_xlabel("time since start (s)")
    alt.set_ylabel("altitude z (m)")
    alt.set_title("altitude and events")
    alt.legend(fontsize=7, loc="center right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = folder / "flight.png" if out is None else Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
