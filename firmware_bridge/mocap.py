"""Positions from a motion-capture system, streamed to each drone's estimator as an external position.

A real system is read with libmotioncapture (`pip install motioncapture`, the library cflib's examples use),
which speaks Vicon, OptiTrack, Qualisys, NOKOV, VRPN and Motion Analysis. A rehearsal (`--dry-run`) reads the
virtual swarm's true positions instead, so the same extpos stream is exercised.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

import numpy as np

from nanoswarm.firmware_bridge.errors import MocapError
from nanoswarm.firmware_bridge.manifest import MocapSpec


class PositionSource(Protocol):
    def positions(self) -> list[np.ndarray | None]:
        """The latest position (m, world frame) of each manifest drone, None where not seen."""

    def close(self) -> None:
        """Release the source."""


class MotionCapture:
    """libmotioncapture's frames, read in a thread; the latest position of each drone's rigid body."""

    def __init__(self, spec: MocapSpec, bodies: list[str]):
        try:
            import motioncapture
        except ImportError:
            raise MocapError("the manifest names a motion-capture system, which nanoswarm reads with "
                             "libmotioncapture: pip install motioncapture") from None
        try:
            self._mc = motioncapture.connect(spec.system, {"hostname": spec.hostname})
        except Exception as err:  # the library raises its own RuntimeErrors per system
            raise MocapError(f"cannot connect to {spec.system} at {spec.hostname}: {err}") from None
        self._bodies = bodies
        self._latest: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="nanoswarm-mocap", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            self._mc.waitForNextFrame()
            frame = {name: np.array(body.position, dtype=np.float64) for name, body in self._mc.rigidBodies.items()}
            with self._lock:
                self._latest.update(frame)

    def positions(self) -> list[np.ndarray | None]:
        with self._lock:
            return [self._latest.get(name) for name in self._bodies]

    def close(self) -> None:
        self._done.set()


class SimulatedMocap:
    """The true positions of a simulated swarm, as a motion-capture system would report them."""

    def __init__(self, read: Callable[[], np.ndarray]):
        self._read = read

    def positions(self) -> list[np.ndarray | None]:
        return [np.asarray(p, dtype=np.float64) for p in self._read()]

    def close(self) -> None:
        pass
