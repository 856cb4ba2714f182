"""The record of one flight, in one folder, written as it happens so that a crash loses nothing:

- `telemetry_<id>.jsonl`: every log packet of drone <id>, one JSON object a line: `t` (s since the flight
  started, host clock), `block` (state, status, attitude, rates; see telemetry.py) and the firmware's
  variable names with their values as logged (cflib units);
- `events.jsonl`: what the bridge saw and did (`t`, `drone` id or null, `kind`, `message`);
- `manifest.yaml`, `mission.yaml`: the resolved configs it flew; `summary.json` at the end.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from nanoswarm.config import to_mapping


@dataclass(frozen=True)
class Event:
    t: float                 # s since the flight started
    drone: int | None        # drone id, None for the swarm
    kind: str
    message: str


class FlightLog:
    """Appends telemetry and events to a flight folder; safe to call from cflib's threads."""

    def __init__(self, folder: Path, drone_ids: list[int], start: float | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.start = time.monotonic() if start is None else start
        self._lock = threading.Lock()
        self._files: dict[int, TextIO] = {i: open(self.folder / f"telemetry_{i}.jsonl", "w") for i in drone_ids}
        self._events_file = open(self.folder / "events.jsonl", "w")
        self.events: list[Event] = []

    def write_configs(self, **configs: Any) -> None:
        for name, config in configs.items():
            (self.folder / f"{name}.yaml").write_text(yaml.safe_dump(to_mapping(config), sort_keys=False))

    def telemetry(self, drone_id: int, block: str, now: float, values: dict[str, float]) -> None:
        line = json.dumps({"t": round(now - self.start, 4), "block": block, **values})
        with self._lock:
            handle = self._files.get(drone_id)
            if handle is not None and not handle.closed:
                handle.write(line + "\n")

    def event(self, kind: str, message: str, drone_id: int | None = None, now: float | None = None) -> Event:
        now = time.monotonic() if now is None else now
        event = Event(t=round(now - self.start, 4), drone=drone_id, kind=kind, message=message)
        with self._lock:
            self.events.append(event)
            if not self._events_file.closed:
                self._events_file.write(json.dumps(event.__dict__) + "\n")
                self._events_file.flush()
        return event

    def write_summary(self, summary: dict[str, Any]) -> Path:
        path = self.folder / "summary.json"
        path.write_text(json.dumps(summary, indent=2) + "\n")
        return path

    def close(self) -> None:
        with self._lock:
            for handle in (*self._files.values(), self._events_file):
                handle.close()


@dataclass
class Track:
    """One drone's logged positions: t (n,) and pos (n, 3), from its state block."""

    t: np.ndarray
    pos: np.ndarray


Rows = list[dict[str, Any]]


def read_telemetry(folder: Path) -> dict[int, Rows]:
    """Every drone's logged packets, by drone id, in the order they arrived."""
    return {int(path.stem.split("_", 1)[1]): [json.loads(line) for line in path.read_text().splitlines()
                                              if line.strip()]
            for path in sorted(Path(folder).glob("telemetry_*.jsonl"))}


def block_samples(rows: Rows, block: str, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Times (n,) and values (n, len(names)) of one drone's packets of `block`; a name a packet lacks is NaN."""
    picked = [r for r in rows if r["block"] == block]
    values = np.array([[r.get(name, np.nan) for name in names] for r in picked], dtype=np.float64)
    return np.array([r["t"] for r in picked], dtype=np.float64), values.reshape(-1, len(names))


def read_tracks(folder: Path) -> dict[int, Track]:
    return {drone: Track(*block_samples(rows, "state", ("stateEstimate.x", "stateEstimate.y", "stateEstimate.z")))
            for drone, rows in read_telemetry(folder).items()}


def read_events(folder: Path) -> list[Event]:
    path = Path(folder) / "events.jsonl"
    return [Event(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
