"""`SwarmRecord`: one swarm's flight on one clock, the single input of every report figure and video.

An evaluated episode (100 Hz, from the simulator) and a logged flight (resampled telemetry) become the same
arrays here, so each picture is written once. Arrays are NumPy, time-major: (T, M, ...) over T samples of
M drones; NaN marks what was not known at a sample (no goal yet, no telemetry from that drone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib import colormaps


@dataclass
class SwarmRecord:
    """Samples of a flight. Quaternions are (w, x, y, z), body to world; motor commands are fractions of
    full scale (the policy's (a + 1) / 2, the firmware's motor.mN / 65535), motors m1..m4 in the Crazyflie's
    numbering."""

    t: np.ndarray                          # (T,) s since the record's start, increasing
    pos: np.ndarray                        # (T, M, 3) m, world frame
    goals: np.ndarray                      # (T, M, 3) m; NaN while a drone has no goal
    collision_radius: float                # m; two drones touch when their centres are twice this apart
    names: list[str]                       # one label per drone
    quat: np.ndarray | None = None         # (T, M, 4); None: attitude not recorded (drawn level)
    motors: np.ndarray | None = None       # (T, M, 4); None: motor commands not recorded
    columns: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))   # (C, 2) column centres, m
    column_radius: float = 0.0             # m
    room: tuple[float, float, float] | None = None   # x, y, z extent of the room centred on x = y = 0
    title: str = ""

    @property
    def drones(self) -> int:
        return self.pos.shape[1]

    @property
    def duration(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0

    @property
    def contact_distance(self) -> float:
        """Centre distance below which two drones collide (sim.interactions counts an impact there)."""
        return 2.0 * self.collision_radius

    def goal_distance(self) -> np.ndarray:
        """(T, M) distance of each drone to its goal, NaN where either is unknown."""
        return np.linalg.norm(self.pos - self.goals, axis=-1)

    def neighbour_distance(self) -> np.ndarray:
        """(T, M) centre distance of each drone to its nearest other drone (inf for a lone drone)."""
        diff = self.pos[:, :, None, :] - self.pos[:, None, :, :]
        dist = np.linalg.norm(diff, axis=-1)
        dist[:, np.arange(self.drones), np.arange(self.drones)] = np.inf
        with np.errstate(invalid="ignore"):
            return np.where(np.isnan(dist), np.inf, dist).min(axis=-1)

    def sample_at(self, time: float) -> int:
        """Index of the last sample at or before `time` (s since the start)."""
        return int(np.clip(np.searchsorted(self.t, self.t[0] + time, side="right") - 1, 0, len(self.t) - 1))

    def bounds(self, margin: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """Low and high corners (3,) of a box around every position and goal, floor included, kept inside
        the room: the view that shows the swarm rather than an empty 10 m room."""
        points = np.concatenate([self.pos.reshape(-1, 3), self.goals.reshape(-1, 3)])
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0:
            points = np.zeros((1, 3))
        low, high = points.min(axis=0) - margin, points.max(axis=0) + margin
        low[2] = 0.0
        if self.room is not None:
            half = 0.5 * np.asarray(self.room)
            low[:2], high[:2] = np.maximum(low[:2], -half[:2]), np.minimum(high[:2], half[:2])
            high[2] = min(high[2], self.room[2])
        return low, high


def drone_colors(m: int) -> list[tuple[float, float, float, float]]:
    """One colour per drone, the same in every figure and video of a record."""
    cmap = colormaps["tab10" if m <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(m)]
