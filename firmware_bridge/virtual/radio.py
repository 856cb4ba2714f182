"""The P2P radio between virtual drones: each app's own-state broadcast reaches the other drones' apps.

Every tick the apps hand over the 15-byte state packets they broadcast (nanoswarm.txHz), and each packet
reaches each other drone unless it is lost; the ones that arrive do so `delay_s` later on the drones'
clock. A drone does not hear its own broadcast. Duplicates are not modelled here: a repeated state packet
changes nothing in a neighbour table. All of it is batched over packets and drones.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from nanoswarm.firmware_bridge.virtual.link import LinkFaults
from nanoswarm.firmware_bridge.virtual.onboard import OnboardApps


class P2PRadio:
    def __init__(self, n: int, faults: LinkFaults, seed: int):
        self.n = n
        self.faults = faults
        self.random = np.random.default_rng(seed)
        self.in_flight: deque[tuple[float, np.ndarray, np.ndarray]] = deque()   # (arrival, packets, receivers)

    def exchange(self, apps: OnboardApps, now: float) -> None:
        """Send the broadcasts due now and deliver the ones that have arrived."""
        now_ms = int(now * 1000.0)
        senders, packets = apps.broadcast(now_ms)
        if len(senders):
            heard = self.random.random((len(senders), self.n)) >= self.faults.loss
            heard[np.arange(len(senders)), senders] = False
            self.in_flight.append((now + self.faults.delay_s, packets, heard))
        while self.in_flight and self.in_flight[0][0] <= now + 1e-9:
            _, arrived, receivers = self.in_flight.popleft()
            apps.deliver(arrived, receivers, now_ms)
