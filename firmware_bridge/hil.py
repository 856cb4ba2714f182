"""Serial hardware-in-the-loop: send observations to a board running the generated policy, read back actions.

`HilLink` speaks the framed, checksummed protocol of `hil_protocol` (firmware side: export/hil) over
pyserial. It greets the board on opening (HELLO -> INFO) and refuses one that runs another policy or
observation layout than expected. Every request carries a fresh sequence number; a request that times
out, or whose answer or request arrived damaged, is sent again with a new number after flushing the
input, so a late or garbled answer to an old request is recognised and dropped, never taken for the new
one. Frames start with a delimiter, which ends any partial frame the board holds: after noise on the
line, the next request is understood. `HilStats` counts what happened; `bench_link` measures round trips.

`check_board` is what `nanoswarm hil` runs: the board's actions against the host-compiled policy.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import serial

from nanoswarm.firmware_bridge.hil_errors import HilError, HilMismatchError, HilTimeoutError
from nanoswarm.firmware_bridge.hil_firmware import (PolicySignature, build_firmware, check_policy_dir, host_board,
                                                    qemu_board, write_hil_firmware)
from nanoswarm.firmware_bridge.hil_protocol import (PROTOCOL_VERSION, SEQ_UNKNOWN, BadFrame, BoardInfo, ErrorCode,
                                                    Frame, FrameReader, MessageType, encode_frame, floats_payload,
                                                    parse_action, parse_error, parse_info)

DEFAULT_BAUD = 115200       # what every USB-serial adapter and the STM32 example's reset clock do reliably
DEFAULT_TIMEOUT_S = 0.5     # per attempt; a 64-float observation spends 23 ms on the wire at 115200 baud
DEFAULT_RETRIES = 3
POLL_S = 0.02               # longest single read: bounds how far past its deadline an attempt can run
LATENCY_WINDOW = 10_000     # round trips kept for the percentiles
RETRYABLE = (ErrorCode.BAD_CRC, ErrorCode.BAD_FRAME, ErrorCode.TOO_LONG)
SIMULATED_PORTS = ("host", "qemu")


@dataclass
class HilStats:
    """What the link has seen since it opened."""

    frames_sent: int = 0
    frames_received: int = 0   # intact frames, whoever they answered
    crc_errors: int = 0        # received frames whose CRC failed
    bad_frames: int = 0        # other damaged input: not COBS, too short, wrong length field, too long
    board_errors: int = 0      # ERROR frames: the board refused something it received
    stale_frames: int = 0      # intact frames answering no request in flight (late, or about line noise)
    timeouts: int = 0
    retries: int = 0
    bytes_received: int = 0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def summary(self) -> dict[str, Any]:
        """The counters and the round-trip latency (ms) over the last LATENCY_WINDOW answered requests."""
        rows: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "latencies_s"}
        if self.latencies_s:
            ms = 1e3 * np.asarray(self.latencies_s)
            rows.update(rtt_mean_ms=float(ms.mean()), rtt_p50_ms=float(np.percentile(ms, 50)),
                        rtt_p99_ms=float(np.percentile(ms, 99)), rtt_max_ms=float(ms.max()))
        return rows


@dataclass(frozen=True)
class HilAction:
    actions: np.ndarray   # (n_out,) float32, bit for bit what the board computed
    board_us: int         # the board's own inference time (0 when it has no clock)
    round_trip_s: float   # request written to answer decoded, on this machine's clock


class _Retry(Exception):
    """One attempt failed in a way another attempt can fix (no answer, damaged answer or request)."""


class HilLink:
    """A serial link to a board running the nanoswarm HIL firmware.

    port: anything pyserial opens (/dev/ttyUSB0, COM3, socket://host:port, a pseudo-terminal).
    expect: the policy the board must run (`PolicySignature.from_policy_dir`); a board with another
        observation size, action size, neighbour count or policy id is refused at the greeting.
    timeout_s, retries: each request is tried 1 + retries times, each attempt waiting timeout_s.
    One request at a time: a link is not meant to be shared between threads.
    """

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUD, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES, expect: PolicySignature | None = None):
        if not (isinstance(baudrate, int) and baudrate > 0):
            raise ValueError(f"baudrate must be a positive integer, got {baudrate!r}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if not (isinstance(retries, int) and retries >= 0):
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        self.port, self.baudrate, self.timeout_s, self.retries = port, baudrate, timeout_s, retries
        self.stats = HilStats()
        self._reader = FrameReader()
        self._received: deque[Frame | BadFrame] = deque()   # cut from the stream, not yet looked at
        self._seq = 0
        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=min(POLL_S, timeout_s),
                                                 write_timeout=timeout_s)
        except (serial.SerialException, ValueError, OSError) as err:
            raise HilError(f"cannot open {port}: {err}. Check the port name (ls /dev/ttyUSB* /dev/ttyACM*), that "
                           "no other program holds it, and that you may use it (the dialout group)") from None
        try:
            self.board = self.info()
            if expect is not None and (wrong := expect.mismatches(self.board)):
                raise HilMismatchError(f"the board on {port} does not run the expected policy: {'; '.join(wrong)}. "
                                       "Flash it with the HIL firmware of this export (nanoswarm export writes it "
                                       "to hil/), or pass the export it was built from")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> HilLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._serial.close()

    def info(self) -> BoardInfo:
        """Greets the board: its policy's sizes and id, and its frame counters."""
        frame = self._request(MessageType.HELLO, b"", MessageType.INFO)
        try:
            return parse_info(frame)
        except ValueError as err:
            raise HilMismatchError(f"the board's INFO is not protocol {PROTOCOL_VERSION}'s ({err}); "
                                   "update its firmware or nanoswarm so that both speak the same version") from None

    def infer(self, observation: np.ndarray) -> np.ndarray:
        """The board's actions (n_out,) float32 for one observation (n_in,)."""
        return self.infer_timed(observation).actions

    def infer_timed(self, observation: np.ndarray) -> HilAction:
        """`infer` with the board's inference time and the round-trip time."""
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape != (self.board.n_in,):
            raise ValueError(f"an observation of shape {obs.shape} given; the board's policy takes "
                             f"({self.board.n_in},)")
        start = time.perf_counter()
        frame = self._request(MessageType.INFER, floats_payload(obs), MessageType.ACTION)
        try:
            actions, micros = parse_action(frame, self.board.n_out)
        except ValueError as err:
            raise HilMismatchError(f"the board's answer does not fit its own INFO ({err}); reset the board") from None
        return HilAction(actions, micros, time.perf_counter() - start)

    def _request(self, message: MessageType, payload: bytes, answer: MessageType) -> Frame:
        problems = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                self._serial.reset_input_buffer()   # whatever is queued answers an abandoned request
                self._reader.clear()
                self._received.clear()
            self._seq = (self._seq + 1) % SEQ_UNKNOWN
            sent = time.perf_counter()
            try:
                self._write(encode_frame(message, self._seq, payload))
                frame = self._await(self._seq, answer, sent + self.timeout_s)
            except _Retry as problem:
                problems.append(str(problem))
                continue
            self.stats.latencies_s.append(time.perf_counter() - sent)
            return frame
        raise self._give_up(message, problems)

    def _write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except serial.SerialTimeoutException:
            self.stats.timeouts += 1
            raise _Retry("the port took no data (flow control held?)") from None
        except (serial.SerialException, OSError) as err:
            raise HilError(f"writing to {self.port} failed: {err}; was the board unplugged?") from None
        self.stats.frames_sent += 1

    def _await(self, seq: int, answer: MessageType, deadline: float) -> Frame:
        """The answer to request `seq`; raises _Retry when this attempt cannot get it."""
        while True:
            while self._received:
                item = self._received.popleft()
                if isinstance(item, BadFrame):
                    if item.reason == "crc":
                        self.stats.crc_errors += 1
                    else:
                        self.stats.bad_frames += 1
                    raise _Retry(f"a damaged frame arrived ({item.reason})")
                if (frame := self._check(item, seq, answer)) is not None:
                    return frame
            if time.perf_counter() >= deadline:
                self.stats.timeouts += 1
                raise _Retry(f"no answer within {self.timeout_s:g} s")
            self._received.extend(self._reader.feed(self._read()))

    def _read(self) -> bytes:
        try:
            data = self._serial.read(max(1, self._serial.in_waiting))
        except (serial.SerialException, OSError) as err:
            raise HilError(f"reading from {self.port} failed: {err}; was the board unplugged?") from None
        self.stats.bytes_received += len(data)
        return data

    def _check(self, frame: Frame, seq: int, answer: MessageType) -> Frame | None:
        """`frame` if it answers request `seq`; None for a stale one; raises for what no retry can fix."""
        self.stats.frames_received += 1
        if frame.version != PROTOCOL_VERSION:
            raise HilMismatchError(f"the board speaks HIL protocol version {frame.version}, this nanoswarm "
                                   f"version {PROTOCOL_VERSION}; update the one that is older")
        if frame.type == MessageType.ERROR:
            self.stats.board_errors += 1
        if frame.seq != seq:
            self.stats.stale_frames += 1
            return None
        if frame.type == answer:
            return frame
        if frame.type != MessageType.ERROR:
            raise HilMismatchError(f"the board answered with message type 0x{frame.type:02x} where "
                                   f"0x{answer:02x} was due; its firmware does not match this nanoswarm")
        code, detail = parse_error(frame)
        if code in RETRYABLE:
            raise _Retry(f"the board received the request damaged ({code.name})")
        if code == ErrorCode.BAD_LENGTH:
            raise HilMismatchError(f"the board expects {detail} payload bytes ({detail // 4} floats) for this "
                                   "request: it runs a policy with another observation layout; flash it with the "
                                   "HIL firmware of this export")
        raise HilMismatchError(f"the board refused the request: {getattr(code, 'name', code)} (detail {detail}); "
                               "its firmware does not match this nanoswarm version")

    def _give_up(self, message: MessageType, problems: list[str]) -> HilError:
        tries = f"{message.name} failed {len(problems)} times ({'; '.join(dict.fromkeys(problems))})"
        if self.stats.frames_received == 0 and self.stats.bytes_received == 0:
            return HilTimeoutError(f"no answer from {self.port}: {tries}. Is a board there, powered, flashed with "
                                   "the nanoswarm HIL firmware (export/hil) and wired TX to RX?")
        if self.stats.frames_received == 0:
            return HilTimeoutError(f"{self.port} sends bytes ({self.stats.bytes_received}) but no intact frame: "
                                   f"{tries}. Wrong baud rate? This link runs at {self.baudrate} baud; the board's "
                                   "must be the same (NSW_HIL_BAUD and NSW_HIL_PCLK_HZ in stm32_uart_main.c)")
        return HilTimeoutError(f"the board on {self.port} stopped answering: {tries}. Was it reset or unplugged? "
                               "A noisy line can also need a larger timeout_s or retries")


@dataclass(frozen=True)
class HilBench:
    """Round trips of `inferences` observations, one after the other."""

    inferences: int
    seconds: float
    inferences_per_s: float
    rtt_mean_ms: float
    rtt_p50_ms: float
    rtt_p99_ms: float
    rtt_max_ms: float
    board_us_mean: float          # 0 when the board has no clock
    max_abs_err: float | None     # against the reference actions, when given


def bench_link(link: HilLink, observations: np.ndarray, reference: np.ndarray | None = None) -> HilBench:
    """Send every observation (N, n_in) in turn; round-trip latency, throughput and, with `reference`
    (N, n_out), the largest difference from it. Measures only: no assertion on time."""
    observations = np.asarray(observations, dtype=np.float32)
    if observations.ndim != 2 or len(observations) == 0:
        raise ValueError(f"observations must be (N, n_in) with N >= 1, got shape {observations.shape}")
    start = time.perf_counter()
    results = [link.infer_timed(obs) for obs in observations]
    seconds = time.perf_counter() - start
    rtt_ms = 1e3 * np.array([r.round_trip_s for r in results])
    actions = np.stack([r.actions for r in results])
    return HilBench(
        inferences=len(results), seconds=seconds, inferences_per_s=len(results) / seconds,
        rtt_mean_ms=float(rtt_ms.mean()), rtt_p50_ms=float(np.percentile(rtt_ms, 50)),
        rtt_p99_ms=float(np.percentile(rtt_ms, 99)), rtt_max_ms=float(rtt_ms.max()),
        board_us_mean=float(np.mean([r.board_us for r in results])),
        max_abs_err=None if reference is None else float(np.abs(actions - reference).max()))


def check_board(port: str, policy: Path, *, baudrate: int = DEFAULT_BAUD, n: int = 1000,
                observations: Path | None = None, seed: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S,
                work_dir: Path | None = None) -> dict[str, Any]:
    """Fly `n` observations through the board on `port` and compare with the host-compiled policy.

    policy: an export folder (or a folder with policy.c / policy.h) that the board was built from.
    port: a serial port, or `host` / `qemu` to build the board firmware and run it here (on this
        computer, or on QEMU's emulated STM32F405) behind a pseudo-terminal.
    observations: a .npy file of (N, n_in) recorded observations; by default `n` random ones across
        what a drone can see (the policy's layout), or standard normal ones when policy.h has no layout.
    Returns the board's INFO, the benchmark, the link's statistics and `failures` (actions further from
    the host-compiled policy than the export's C tolerance), ready for a table or JSON.
    """
    from nanoswarm.export.host import compile_host
    from nanoswarm.export.pipeline import C_TOLERANCE

    policy_dir = check_policy_dir(policy)
    signature = PolicySignature.from_policy_dir(policy_dir)
    obs = _observations(policy_dir, signature, n, observations, seed)
    with ExitStack() as stack:
        work = Path(work_dir) if work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hil_")))
        reference = compile_host(policy_dir, work / "host_policy")(obs)
        device = port
        if port in SIMULATED_PORTS:
            firmware = write_hil_firmware(policy_dir, work / "firmware")
            binary = build_firmware(firmware, "host" if port == "host" else "stm32")
            device = stack.enter_context(host_board(binary) if port == "host" else qemu_board(binary)).port
        link = stack.enter_context(HilLink(device, baudrate, timeout_s, expect=signature))
        bench = bench_link(link, obs, reference)
        info = link.info()
    failures = [] if bench.max_abs_err <= C_TOLERANCE else [
        f"the board's actions differ from the host-compiled policy by {bench.max_abs_err:.3g} > {C_TOLERANCE:g}"]
    return {"port": port, "device": device, "board": asdict(info), "bench": asdict(bench),
            "link": link.stats.summary(), "failures": failures}


def _observations(policy_dir: Path, signature: PolicySignature, n: int, path: Path | None,
                  seed: int) -> np.ndarray:
    if path is not None:
        obs = np.load(path).astype(np.float32)
        if obs.ndim != 2 or obs.shape[1] != signature.n_in:
            raise ValueError(f"{path} holds observations of shape {obs.shape}; the policy takes (N, "
                             f"{signature.n_in})")
        return obs[:n]
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if signature.num_neighbors is None:
        return np.random.default_rng(seed).standard_normal((n, signature.n_in)).astype(np.float32)
    from nanoswarm.export.crazyflie_app import policy_layout
    from nanoswarm.export.observations import random_observations

    return random_observations(policy_layout(policy_dir / "policy.h"), n, seed=seed)
