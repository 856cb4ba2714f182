"""The live status table shown while flying (rich `Live`): one row per drone, built from snapshots only."""

from __future__ import annotations

import math

from rich.table import Table

from nanoswarm.firmware_bridge.telemetry import APP_MODES, Snapshot


def _number(value: float, fmt: str) -> str:
    return "-" if math.isnan(value) else format(value, fmt)


def status_table(ids: list[int], snapshots: list[Snapshot], states: list[str], now: float, phase: str,
                 elapsed: float, battery_warn_v: float) -> Table:
    """Link quality, telemetry age, battery, position and flight state per drone, under the current phase."""
    table = Table(title=f"nanoswarm fly  {phase}  t = {elapsed:5.1f} s   (Ctrl-C or any key: emergency stop)")
    for column in ("drone", "link %", "age ms", "battery V", "x m", "y m", "z m", "app", "state"):
        table.add_column(column, justify="left" if column in ("state", "app") else "right")
    for drone_id, snap, state in zip(ids, snapshots, states):
        age_ms = snap.age(now) * 1000.0
        battery = _number(snap.vbat, ".2f")
        if snap.vbat < battery_warn_v:
            battery = f"[yellow]{battery}[/yellow]"
        x, y, z = (_number(v, "+.2f") for v in snap.pos)
        style = "red" if state.startswith(("lost", "stopped")) else "green" if state == "flying" else ""
        table.add_row(str(drone_id), _number(snap.link_quality, ".0f"),
                      "-" if math.isinf(age_ms) else f"{age_ms:.0f}", battery, x, y, z,
                      APP_MODES.get(snap.app_mode, "-"), f"[{style}]{state}[/{style}]" if style else state)
    return table
