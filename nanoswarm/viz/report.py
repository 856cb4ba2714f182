"""Reports of flights, simulated or flown: `report.md` and its PNGs in one folder, readable on GitHub, in an
editor or as files. `nanoswarm eval` writes one for the episodes it recorded, `nanoswarm fly` one into the
flight's log folder. Markdown with relative image links, rather than HTML, so the folder can be committed,
diffed and moved as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanoswarm.viz.figures import (Draw, draw_3d, draw_goal_distance, draw_motors, draw_neighbour_distance,
                                   draw_top_view, panels)
from nanoswarm.viz.record import SwarmRecord


@dataclass(frozen=True)
class Section:
    file: str
    heading: str
    caption: str                 # what the reader should look for
    draw: Draw
    projection: str | None = None
    needs_motors: bool = False


SECTIONS = (
    Section("trajectories_3d.png", "Trajectories", "Paths in 3D; o marks each start, x each drone's last goal.",
            draw_3d, "3d"),
    Section("top_view.png", "Top view", "The same paths from above, with the columns and the room's walls.",
            draw_top_view),
    Section("goal_distance.png", "Distance to goal",
            "Log scale: a drop by decades is an arrival; a step up is a new goal.", draw_goal_distance),
    Section("neighbour_distance.png", "Nearest neighbour",
            "Centre distance to the closest other drone. Below the dashed red line two drones touch: a collision.",
            draw_neighbour_distance),
    Section("motors.png", "Motor commands",
            "Mean of each drone's four motor commands, and their spread as a band; 0 or 1 is saturation.",
            draw_motors, needs_motors=True),
)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def metrics_table(metrics: dict[str, Any]) -> list[str]:
    """A Markdown table of the metrics; nested dicts become `outer inner` rows."""
    rows = ["| metric | value |", "| --- | ---: |"]
    for key, value in metrics.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for inner, v in items:
            rows.append(f"| {key if inner is None else f'{key} {inner}'} | {format_value(v)} |")
    return rows


def write_report(records: list[SwarmRecord], metrics: dict[str, Any], folder: str | Path, title: str,
                 notes: list[str] | None = None, extra: list[tuple[str, str]] | None = None) -> Path:
    """Write `folder/report.md` with a figure per section (one panel per record) and the metrics table.

    notes: lines for the reader (what was not recorded, and why). extra: (heading, image file already in
    `folder`) pairs shown after the figures, such as a flight's event timeline.
    """
    if not records:
        raise ValueError("a report needs at least one recorded episode or flight (record >= 1)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", "## Metrics", "", *metrics_table(metrics), ""]
    recorded = all(r.motors is not None for r in records)
    for section in SECTIONS:
        lines += [f"## {section.heading}", ""]
        if section.needs_motors and not recorded:
            lines += ["Motor commands were not recorded for this flight (see the notes).", ""]
            continue
        panels(records, section.draw, section.projection).savefig(folder / section.file)
        lines += [section.caption, "", f"![{section.heading}]({section.file})", ""]
    for heading, file in extra or []:
        lines += [f"## {heading}", "", f"![{heading}]({file})", ""]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path
