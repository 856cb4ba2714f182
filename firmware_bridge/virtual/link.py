"""The radio links of the virtual swarm: one UDP socket per drone, served by one I/O thread, with faults.

Each drone listens on its own port as cflib's UDP driver expects (`udp://host:base_port+i`) and answers
whoever asked; streamed data (log blocks, console) goes to the last client heard. Faults are injected per
link and per direction, as a radio link would suffer them: a packet may be lost, delayed or duplicated on
its way up (client to drone) or down. A silent drone closes its socket, so the host's operating system
answers "port unreachable", which cflib's UDP driver reports as a link error: the closest a UDP link comes
to a Crazyflie that stopped answering (over the radio, cflib's "Too many packets lost").
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from nanoswarm.firmware_bridge.virtual.errors import VirtualSwarmError

Address = tuple[str, int]
MAX_DATAGRAM = 2048      # read size: anything longer than a CRTP packet is read whole, then dropped
READS_PER_WAKE = 64      # datagrams read from one socket before the others get their turn


@dataclass(frozen=True)
class LinkFaults:
    """What happens to each packet on one direction of a link (probabilities per packet, delay in seconds)."""

    loss: float = 0.0
    delay_s: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise VirtualSwarmError(f"LinkFaults.{name} is a probability in [0, 1], got {value!r}")
        if not (isinstance(self.delay_s, (int, float)) and math.isfinite(self.delay_s) and self.delay_s >= 0.0):
            raise VirtualSwarmError(f"LinkFaults.delay_s is a delay in seconds >= 0, got {self.delay_s!r}")


DIRECTIONS = ("up", "down", "both")


class IoLoop(threading.Thread):
    """One thread that reads every drone's socket and runs delayed deliveries when they fall due."""

    def __init__(self) -> None:
        super().__init__(name="nanoswarm-virtual-io", daemon=True)
        self.selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self.selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def call_later(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run `action` on the I/O thread after `delay_s` seconds (0: as soon as it can)."""
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._order), action))
        self._wake()

    def call(self, action: Callable[[], None], timeout_s: float = 2.0) -> None:
        """Run `action` on the I/O thread and wait until it has run (sockets change only there)."""
        if threading.current_thread() is self or not self.is_alive():
            action()
            return
        done = threading.Event()

        def run() -> None:
            try:
                action()
            finally:
                done.set()
        self.call_later(0.0, run)
        done.wait(timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=2.0)
        self.selector.close()
        self._wake_read.close()
        self._wake_write.close()

    def _wake(self) -> None:
        try:
            self._wake_write.send(b"\0")
        except OSError:
            pass  # the buffer is full (a wake-up is pending anyway) or the loop has stopped

    def run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                wait = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else 0.5
            for key, _ in self.selector.select(wait):
                if key.data is None:
                    self._drain_wake()
                else:
                    key.data()
            self._run_due()

    def _drain_wake(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except OSError:
            pass

    def _run_due(self) -> None:
        while True:
            with self._lock:
                if not self._timers or self._timers[0][0] > time.monotonic():
                    return
                _, _, action = heapq.heappop(self._timers)
            action()


class DroneLink:
    """One drone's end of its radio link: a UDP socket, its faults, and the client it last heard."""

    def __init__(self, address: Address, io: IoLoop, on_datagram: Callable[[bytes, Address], None], seed: int):
        self.address = address
        self.io = io
        self.on_datagram = on_datagram
        self.up = LinkFaults()
        self.down = LinkFaults()
        self.peer: Address | None = None
        self._socket: socket.socket | None = None
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def silent(self) -> bool:
        return self._socket is None

    def open(self) -> None:
        """Bind the drone's port (called before the I/O thread starts, and again on the I/O thread when a
        silent drone speaks again)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
        except OSError as err:
            sock.close()
            raise VirtualSwarmError(f"cannot listen on udp://{self.address[0]}:{self.address[1]} ({err.strerror}); "
                                    "another virtual swarm may hold it: stop it or pass another base_port") from err
        sock.setblocking(False)
        self.io.selector.register(sock, selectors.EVENT_READ, self._read)
        self._socket = sock

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            self.io.selector.unregister(sock)
            sock.close()

    def set_silent(self, silent: bool) -> None:
        if silent != self.silent:
            self.io.call(self.close if silent else self.open)

    def set_faults(self, faults: LinkFaults, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise VirtualSwarmError(f"direction '{direction}' is unknown; use one of {DIRECTIONS}")
        with self._lock:
            if direction in ("up", "both"):
                self.up = faults
            if direction in ("down", "both"):
                self.down = faults

    def send(self, datagram: bytes, to: Address | None = None) -> None:
        """Send one packet down the link (to `to`, else to the last client heard), through the downlink faults."""
        target = to or self.peer
        if target is not None:
            self._through("down", lambda: self._sendto(datagram, target))

    def _sendto(self, datagram: bytes, target: Address) -> None:
        sock = self._socket
        if sock is None:
            return
        try:
            sock.sendto(datagram, target)
        except OSError:
            pass  # a full buffer or an unreachable client loses the packet, as a radio would

    def _read(self) -> None:
        for _ in range(READS_PER_WAKE):
            sock = self._socket
            if sock is None:
                return
            try:
                datagram, source = sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error from an earlier reply to a client that has gone
            self._through("up", lambda d=datagram, s=source: self.on_datagram(d, s))

    def _through(self, direction: str, deliver: Callable[[], None]) -> None:
        with self._lock:
            faults = self.up if direction == "up" else self.down
            lost = faults.loss > 0.0 and self._random.random() < faults.loss
            copies = 2 if faults.duplicate > 0.0 and self._random.random() < faults.duplicate else 1
        if lost:
            return
        for _ in range(copies):
            if faults.delay_s > 0.0:
                self.io.call_later(faults.delay_s, deliver)
            else:
                deliver()
