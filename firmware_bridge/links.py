"""Links to the swarm on cflib: parallel connects with deadlines and retries, one sender thread per drone,
parameter writes that wait for their echo, and the emergency stop.

cflib's `SyncCrazyflie.open_link` waits without a deadline, and over UDP (no resends) one lost connect reply
hangs it forever; here each attempt waits on cflib's own callbacks with a deadline, closes a link that
missed it, and tries again. All drones share one TOC cache (`CachedCfFactory`), so only the first connect
of a firmware build downloads its tables.

`Crazyflie.send_packet` can block for up to 2 s under radio back-pressure while holding the drone's send
lock, so nothing that times other drones sends directly: each drone gets a `LinkSender` thread, fed with
one-shot commands (in order) and streams (latest wins, so a slow link skips stale setpoints rather than
queueing them).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cflib.crtp
from cflib.crazyflie import Crazyflie
from cflib.crazyflie.swarm import CachedCfFactory

from nanoswarm.firmware_bridge.errors import BridgeError, ConnectError
from nanoswarm.firmware_bridge.manifest import DroneSpec

DEFAULT_TOC_CACHE = Path.home() / ".cache" / "nanoswarm" / "toc"
PARAM_TIMEOUT_S = 2.0           # a parameter write not echoed by then has failed
EMERGENCY_JOIN_S = 0.5          # how long the emergency stop waits for its sends before reporting
EMERGENCY_ROUNDS = 3
EMERGENCY_INTERVAL_S = 0.05


class LinkSender:
    """The one thread that sends to one drone."""

    def __init__(self, name: str, on_error: Callable[[BaseException], None]):
        self._cond = threading.Condition()
        self._once: deque[Callable[[], None]] = deque()
        self._streams: dict[str, Callable[[], None]] = {}
        self._closed = False
        self._halted = False
        self._on_error = on_error
        self.sent: Counter[str] = Counter()        # calls carried out, per stream key ('once' for one-shots)
        self.first: dict[str, float] = {}          # monotonic time of each key's first and last call
        self.last: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name=f"nanoswarm-send-{name}", daemon=True)
        self._thread.start()

    def post(self, fn: Callable[[], None]) -> None:
        """Send once, after everything posted before."""
        with self._cond:
            if not self._halted:
                self._once.append(fn)
                self._cond.notify()

    def stream(self, key: str, fn: Callable[[], None]) -> None:
        """Send the latest of a stream: replaces a not-yet-sent `fn` of the same key."""
        with self._cond:
            if not self._halted:
                self._streams[key] = fn
                self._cond.notify()

    def halt(self) -> None:
        """Drop everything pending and accept nothing more (the emergency stop sends on its own threads)."""
        with self._cond:
            self._halted = True
            self._once.clear()
            self._streams.clear()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=3.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._once or self._streams):
                    self._cond.wait()
                work = [("once", fn) for fn in self._once] + list(self._streams.items())
                self._once.clear()
                self._streams.clear()
                if self._closed and not work:   # closing sends what was posted before, then stops
                    return
            for key, fn in work:
                try:
                    fn()
                except Exception as err:  # a link error must not kill the sender of a flying drone
                    self._on_error(err)
                    continue
                now = time.monotonic()
                self.sent[key] += 1
                self.first.setdefault(key, now)
                self.last[key] = now

    def rate_hz(self, key: str) -> float:
        """Calls per second of stream `key` while it ran; NaN for fewer than two."""
        if self.sent[key] < 2 or self.last[key] <= self.first[key]:
            return math.nan
        return (self.sent[key] - 1) / (self.last[key] - self.first[key])


class Pacer:
    """Paces a stream at `hz` from a loop that runs at `loop_hz` with jitter: a send counts as due up to half
    a loop period early, and the schedule advances by whole periods, so the average rate holds even when
    the stream's rate equals the loop's."""

    def __init__(self, hz: float, loop_hz: float):
        self.period = 1.0 / hz
        self.slack = 0.5 / loop_hz
        self.next = -math.inf

    def due(self, now: float) -> bool:
        if now + self.slack < self.next:
            return False
        self.next = max(self.next + self.period, now - self.slack)
        return True

    def reset(self) -> None:
        """Make the next call due (a new command should go out at once)."""
        self.next = -math.inf


@dataclass
class DroneLink:
    """A connected Crazyflie of the manifest."""

    spec: DroneSpec
    uri: str
    cf: Crazyflie
    lost_reason: str | None = None
    sender: LinkSender = field(init=False)
    _lost: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sender = LinkSender(str(self.spec.id), lambda err: self._mark_lost(f"send failed: {err}"))
        self.cf.connection_lost.add_callback(lambda uri, message: self._mark_lost(f"link lost: {message}"))

    def _mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self.lost_reason = reason
            self._lost.set()

    @property
    def lost(self) -> bool:
        """cflib reported the link lost (a radio that stops acking, a closed socket); a drone that merely
        falls silent shows up as stale telemetry instead."""
        return self._lost.is_set()

    def has_param(self, name: str) -> bool:
        group, _, item = name.partition(".")
        return self.cf.param.toc.get_element(group, item) is not None

    def has_log(self, name: str) -> bool:
        group, _, item = name.partition(".")
        return self.cf.log.toc.get_element(group, item) is not None

    def set_param(self, name: str, value: float, timeout_s: float = PARAM_TIMEOUT_S) -> None:
        """Write a parameter and wait for the drone to echo it (params are slow, so only before flight)."""
        group, _, item = name.partition(".")
        echoed = threading.Event()

        def on_update(_name: str, _value: str) -> None:
            echoed.set()

        self.cf.param.add_update_callback(group=group, name=item, cb=on_update)
        try:
            self.cf.param.set_value(name, value)
            if not echoed.wait(timeout_s):
                raise BridgeError(f"drone {self.spec.id} ({self.uri}) did not confirm parameter {name} = {value} "
                                  f"within {timeout_s} s")
        finally:
            self.cf.param.remove_update_callback(group=group, name=item, cb=on_update)

    def close(self) -> None:
        self.sender.close()
        if self.cf.link is not None:
            self.cf.close_link()


def close_all(links: list[DroneLink]) -> None:
    """Close every link, in parallel: cflib's close waits up to 1 s for each drone's receive thread."""
    threads = [threading.Thread(target=link.close, name=f"nanoswarm-close-{link.spec.id}", daemon=True)
               for link in links]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5.0)


def _connect_once(factory: CachedCfFactory, uri: str, timeout_s: float) -> tuple[Crazyflie | None, str]:
    """One attempt: the Crazyflie once fully connected (TOCs and parameter values), or None and why not."""
    cf = factory.construct(uri).cf
    done = threading.Event()
    stage = {"toc": False, "error": ""}

    def on_connected(_uri: str) -> None:
        stage["toc"] = True

    def on_fully_connected(_uri: str) -> None:
        done.set()

    def on_failed(_uri: str, message: str) -> None:
        stage["error"] = message.splitlines()[0] if message else "connection failed"
        done.set()

    callbacks = ((cf.connected, on_connected), (cf.fully_connected, on_fully_connected),
                 (cf.connection_failed, on_failed), (cf.connection_lost, on_failed))
    for caller, cb in callbacks:
        caller.add_callback(cb)
    cf.open_link(uri)
    answered = done.wait(timeout_s)
    for caller, cb in callbacks:
        caller.remove_callback(cb)
    if answered and not stage["error"]:
        return cf, ""
    if cf.link is not None:
        cf.close_link()
    if stage["error"]:
        return None, stage["error"]
    where = "parameter values incomplete" if stage["toc"] else "TOCs not downloaded"
    return None, f"no complete answer within {timeout_s:g} s ({where})"


def connect_swarm(drones: list[DroneSpec], uris: list[str], timeout_s: float, retries: int,
                  cache_dir: Path = DEFAULT_TOC_CACHE) -> list[DroneLink]:
    """Connect every drone in parallel, each with `1 + retries` attempts of `timeout_s`.

    Raises ConnectError naming every drone that failed and each attempt's reason; the drones that did
    connect are closed again, so a failed connect leaves no link open.
    """
    cflib.crtp.init_drivers()
    cache_dir.mkdir(parents=True, exist_ok=True)
    factory = CachedCfFactory(rw_cache=str(cache_dir))

    def connect(index: int) -> tuple[Crazyflie | None, list[str]]:
        reasons = []
        for _ in range(1 + retries):
            cf, reason = _connect_once(factory, uris[index], timeout_s)
            if cf is not None:
                return cf, reasons
            reasons.append(reason)
        return None, reasons

    with ThreadPoolExecutor(max_workers=len(drones), thread_name_prefix="nanoswarm-connect") as pool:
        results = list(pool.map(connect, range(len(drones))))
    links = [DroneLink(spec, uri, cf) for spec, uri, (cf, _) in zip(drones, uris, results) if cf is not None]
    failed = [(spec, uri, reasons) for spec, uri, (cf, reasons) in zip(drones, uris, results) if cf is None]
    if failed:
        close_all(links)
        lines = [f"drone {spec.id} ({uri}): " + "; ".join(f"attempt {k + 1}: {r}" for k, r in enumerate(reasons))
                 for spec, uri, reasons in failed]
        raise ConnectError(f"{len(failed)} of {len(drones)} drones did not connect, so none will fly:\n  "
                           + "\n  ".join(lines) + "\nCheck that they are switched on, the radio addresses and "
                           "channels in the manifest, and that no other client holds their links.")
    return links


def emergency_stop(links: list[DroneLink], rounds: int = EMERGENCY_ROUNDS) -> float:
    """Motors off on every drone now, all links in parallel; returns the seconds until every drone's first
    stop was sent.

    Pending setpoints are dropped first so that nothing queued re-arms a motor; then each drone gets a stop
    setpoint (streamed-setpoint priority), a commander stop and the supervisor's emergency stop, which on a
    Crazyflie locks the motors until it is rebooted. The stops are sent `rounds` times, EMERGENCY_INTERVAL_S
    apart, so that a lost packet cannot leave a motor running.
    """
    start = time.monotonic()
    for link in links:
        link.sender.halt()
    first_round = threading.Barrier(len(links) + 1)

    def stop(link: DroneLink) -> None:
        for round_ in range(rounds):
            for send in (link.cf.commander.send_stop_setpoint, link.cf.high_level_commander.stop,
                         link.cf.supervisor.send_emergency_stop):
                if link.cf.link is None:
                    break
                try:
                    send()
                except Exception:  # a dead link must not keep the next stop from going out
                    continue
            if round_ == 0:
                first_round.wait(EMERGENCY_JOIN_S)
            time.sleep(EMERGENCY_INTERVAL_S)

    threads = [threading.Thread(target=stop, args=(link,), name=f"nanoswarm-estop-{link.spec.id}", daemon=True)
               for link in links]
    for thread in threads:
        thread.start()
    try:
        first_round.wait(EMERGENCY_JOIN_S)
    except threading.BrokenBarrierError:
        pass
    sent = time.monotonic() - start
    for thread in threads:
        thread.join(timeout=EMERGENCY_JOIN_S + rounds * EMERGENCY_INTERVAL_S)
    return sent
