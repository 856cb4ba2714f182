"""Specification of the serial hardware-in-the-loop link (nanoswarm.firmware_bridge.hil and export/hil).

Everything is real: an untrained attention policy exported to ONNX and generated as C, the board firmware
built with the Makefile it ships with (host gcc; arm-none-eabi-gcc for the STM32F405), run behind
pseudo-terminals (and on QEMU's netduinoplus2), and HilLink talking to it through pyserial. The oracle is
the same policy.c compiled by nanoswarm.export.host and called through ctypes. Damage on the line comes
from a relay between two pseudo-terminals that corrupts or drops chosen frames, from bytes written into
the board's terminal, and from random, truncated and bit-flipped frames by the thousand.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
import tty
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import serial
import torch

from nanoswarm.export.codegen import generate_c
from nanoswarm.export.host import compile_host
from nanoswarm.export.mcu import Disassembly
from nanoswarm.export.observations import random_observations
from nanoswarm.export.onnx_export import action_metadata, export_onnx
from nanoswarm.firmware_bridge.hil import HilLink, bench_link, check_board
from nanoswarm.firmware_bridge.hil_errors import HilBuildError, HilError, HilMismatchError, HilTimeoutError
from nanoswarm.firmware_bridge.hil_firmware import (SANITIZERS, PolicySignature, RunningBoard, build_firmware,
                                                    host_board, policy_id, qemu_board, write_hil_firmware)
from nanoswarm.firmware_bridge.hil_protocol import (CRC, HEADER, SEQ_UNKNOWN, BadFrame, ErrorCode, Frame, FrameReader,
                                                    MessageType, cobs_decode, cobs_encode, crc16,
                                                    encode_frame, floats_payload, parse_error)
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.params import load_params

K = 2
N_IN = ObservationLayout(num_neighbors=K).size
N_OUT = 4
MARKER = b"marker"  # payload of the HELLO that follows every piece of fuzz


def export_policy(out: Path, num_neighbors: int, seed: int) -> Path:
    """An untrained attention policy (weights scaled up so the actions vary) as generated C in out/c."""
    torch.manual_seed(seed)
    policy = SwarmPolicy(ObservationLayout(num_neighbors=num_neighbors),
                         PolicyConfig(actor="attention", hidden=8, head=(16,)))
    with torch.no_grad():
        policy.actor.mean.weight.normal_(0.0, 0.5)
    export_onnx(policy, out / "policy.onnx", source_sha256="0" * 64,
                action_meta=action_metadata(load_params("crazyflie21_sysid")))
    generate_c(out / "policy.onnx", out / "c")
    return out


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return export_policy(tmp_path_factory.mktemp("export"), K, seed=0)


@pytest.fixture(scope="module")
def firmware(export_dir) -> Path:
    return write_hil_firmware(export_dir / "c", export_dir / "hil")


@pytest.fixture(scope="module")
def host_firmware(firmware) -> Path:
    return build_firmware(firmware, "host")


@pytest.fixture(scope="module")
def reference(export_dir) -> Callable[[np.ndarray], np.ndarray]:
    """The oracle: policy.c built by nanoswarm.export.host, called through ctypes."""
    return compile_host(export_dir / "c", export_dir / "host_build")


@pytest.fixture(scope="module")
def observations() -> np.ndarray:
    return random_observations(ObservationLayout(num_neighbors=K), 300, seed=1)


@pytest.fixture
def board(host_firmware) -> Iterator[RunningBoard]:
    with host_board(host_firmware) as running:
        yield running
        assert running.process.poll() is None, last_words(running)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(np.asarray(a, np.float32).view(np.uint32), np.asarray(b, np.float32).view(np.uint32))


def last_words(board: RunningBoard) -> str:
    """What a failing board wrote to stderr (a sanitizer's report) once it has ended."""
    try:
        board.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return "the board still runs but stopped answering"
    return board.process.stderr.read().decode()


# ---- the link against the host-built board ----

def test_actions_equal_the_host_compiled_policy_bit_for_bit(board, export_dir, reference, observations):
    with HilLink(board.port, expect=PolicySignature.from_policy_dir(export_dir)) as link:
        assert (link.board.n_in, link.board.n_out, link.board.num_neighbors) == (N_IN, N_OUT, K)
        assert link.board.policy_id == policy_id(export_dir / "c")
        actions = np.stack([link.infer(obs) for obs in observations])
        assert actions.std(axis=0).min() > 0.05  # a real comparison, not of saturated constants
        assert same_bits(actions, reference(observations))
        info = link.info()
        assert (info.frames_ok, info.frames_bad) == (len(observations) + 2, 0)  # two HELLOs, no refusals
        stats = link.stats
        assert stats.frames_sent == stats.frames_received == len(observations) + 2
        assert stats.retries == stats.timeouts == stats.crc_errors == stats.board_errors == 0
        assert len(stats.latencies_s) == len(observations) + 2


def test_bench_measures_round_trips_and_accuracy(board, reference, observations):
    with HilLink(board.port) as link:
        bench = bench_link(link, observations[:50], reference(observations[:50]))
    assert bench.inferences == 50 and bench.max_abs_err == 0.0
    assert 0 < bench.rtt_p50_ms <= bench.rtt_p99_ms <= bench.rtt_max_ms
    assert bench.inferences_per_s == pytest.approx(50 / bench.seconds)
    assert bench.board_us_mean >= 0


def test_garbage_and_truncated_frames_on_the_line_are_survived(board, reference, observations):
    rng = np.random.default_rng(2)
    request = encode_frame(MessageType.INFER, 7, floats_payload(observations[0]))
    noise = [rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),       # noise, zeros included
             request[:len(request) // 2],                                 # a frame cut off mid-way
             bytes(rng.integers(1, 256, 5000, dtype=np.uint8)),          # a run far longer than any frame
             request[:20] + bytes([request[20] ^ 0x10]) + request[21:]]  # a flipped bit
    with HilLink(board.port) as link, serial.Serial(board.port) as line:
        for i, garbage in enumerate(noise):
            line.write(garbage)
            line.flush()
            assert same_bits(link.infer(observations[i]), reference(observations[i:i + 1])[0])
        assert link.stats.stale_frames >= 3   # the board's ERROR answers to the noise, told apart and dropped
        assert link.info().frames_bad >= 3


class Relay:
    """A serial line between HilLink and the board: pyserial on the board's terminal, a new pseudo-terminal
    for the link, and a thread that forwards frame by frame through `tamper(direction, index, frame)`, which
    returns the bytes to deliver (b"" drops the frame). Directions are "to_board" and "to_host"."""

    def __init__(self, board_port: str, tamper: Callable[[str, int, bytes], bytes]):
        self.board = serial.Serial(board_port, timeout=0)
        self.master, terminal = os.openpty()
        tty.setraw(terminal)
        self.port, self._terminal = os.ttyname(terminal), terminal
        self.tamper, self.counts = tamper, {"to_board": 0, "to_host": 0}
        self._pending = {"to_board": bytearray(), "to_host": bytearray()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _forward(self, direction: str, data: bytes, send: Callable[[bytes], object]) -> None:
        pending = self._pending[direction]
        pending += data
        while (end := pending.find(0)) >= 0:
            piece = bytes(pending[:end + 1])
            del pending[:end + 1]
            if len(piece) > 1:   # a frame and its closing delimiter; lone delimiters pass untouched
                piece = self.tamper(direction, self.counts[direction], piece)
                self.counts[direction] += 1
            send(piece)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, self.board.fileno()], [], [], 0.02)
            if self.master in ready:
                self._forward("to_board", os.read(self.master, 4096), self.board.write)
            if self.board.fileno() in ready:
                self._forward("to_host", self.board.read(self.board.in_waiting or 1),
                              lambda b: os.write(self.master, b))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.board.close()
        os.close(self.master)
        os.close(self._terminal)


def flip_bit(piece: bytes) -> bytes:
    """A frame (COBS and its delimiter) with one bit of its content flipped: still framed, failing its CRC."""
    body = bytearray(cobs_decode(piece[:-1]))
    body[len(body) // 2] ^= 0x04
    return cobs_encode(bytes(body)) + b"\0"


@pytest.mark.parametrize("damage, counter", [
    ("request bit flipped", "board_errors"),   # the board answers ERROR BAD_CRC with the request's number
    ("answer bit flipped", "crc_errors"),      # the link's own CRC check
    ("answer dropped", "timeouts"),            # nothing comes back
])
def test_a_damaged_request_or_answer_is_sent_again(damage, counter, board, reference, observations):
    def tamper(direction: str, index: int, frame: bytes) -> bytes:
        first_infer = index == 1   # frame 0 each way is the greeting
        if damage == "request bit flipped" and direction == "to_board" and first_infer:
            return flip_bit(frame)
        if damage == "answer bit flipped" and direction == "to_host" and first_infer:
            return flip_bit(frame)
        if damage == "answer dropped" and direction == "to_host" and first_infer:
            return b""
        return frame

    relay = Relay(board.port, tamper)
    try:
        with HilLink(relay.port, timeout_s=0.5) as link:
            actions = [link.infer(obs) for obs in observations[:3]]
            assert same_bits(np.stack(actions), reference(observations[:3]))
            assert link.stats.retries == 1 and getattr(link.stats, counter) == 1
            assert link.stats.frames_sent == 5   # greeting, 3 requests, 1 repeat
    finally:
        relay.close()


def test_a_late_answer_is_never_taken_for_a_newer_request(board, reference, observations):
    """The first answer is held back past the link's timeout and then delivered after the repeat's answer."""
    held: list[bytes] = []

    def tamper(direction: str, index: int, frame: bytes) -> bytes:
        if direction == "to_host" and index == 1:
            held.append(frame)
            return b""
        if direction == "to_host" and index == 2:
            return frame + held.pop()
        return frame

    relay = Relay(board.port, tamper)
    try:
        with HilLink(relay.port, timeout_s=0.5) as link:
            for obs, expected in zip(observations[:3], reference(observations[:3])):
                assert same_bits(link.infer(obs), expected)
            assert link.stats.stale_frames == 1 and link.stats.retries == 1
    finally:
        relay.close()


# ---- errors that name their fix ----

def test_a_silent_port_raises_in_bounded_time():
    """The issue asks for a bounded wait on a silent board: 3 tries of 0.2 s each, checked against 5 s."""
    master, terminal = os.openpty()
    try:
        start = time.monotonic()
        with pytest.raises(HilTimeoutError, match=r"no answer from .*HELLO failed 3 times.*Is a board there"):
            HilLink(os.ttyname(terminal), timeout_s=0.2, retries=2)
        assert time.monotonic() - start < 5.0
    finally:
        os.close(master)
        os.close(terminal)


def test_a_board_sending_only_noise_suggests_the_baud_rate():
    """What a board at another baud rate looks like: every request is answered with bytes that are no frame."""
    master, terminal = os.openpty()
    tty.setraw(terminal)
    rng = np.random.default_rng(3)
    stop = threading.Event()

    def noisy_board() -> None:
        while not stop.is_set():
            if select.select([master], [], [], 0.02)[0]:
                os.read(master, 4096)
                os.write(master, rng.integers(0, 256, 40, dtype=np.uint8).tobytes())

    thread = threading.Thread(target=noisy_board, daemon=True)
    thread.start()
    try:
        with pytest.raises(HilTimeoutError, match=r"sends bytes .* but no intact frame.*Wrong baud rate\? This "
                                                  r"link runs at 57600 baud"):
            HilLink(os.ttyname(terminal), baudrate=57600, timeout_s=0.2, retries=2)
    finally:
        stop.set()
        thread.join()
        os.close(master)
        os.close(terminal)


def test_a_missing_port_names_the_fix():
    with pytest.raises(HilError, match=r"cannot open /dev/nanoswarm-no-such-port.*dialout"):
        HilLink("/dev/nanoswarm-no-such-port")


def test_an_unplugged_board_is_reported(host_firmware):
    with host_board(host_firmware) as board, HilLink(board.port) as link:
        board.process.kill()
        board.process.wait()
        with pytest.raises(HilError, match="was the board unplugged"):
            link.infer(np.zeros(N_IN, np.float32))


@pytest.mark.parametrize("num_neighbors, seed, named", [
    (1, 0, r"observation size 40 where the policy has 34; .*neighbours 2 where the policy has 1"),
    (K, 5, r"policy id [0-9a-f]{8} where this policy.c/policy.h is [0-9a-f]{8}"),
])
def test_another_policy_is_refused_at_hello(num_neighbors, seed, named, board, tmp_path):
    other = PolicySignature.from_policy_dir(export_policy(tmp_path, num_neighbors, seed))
    with pytest.raises(HilMismatchError, match=rf"does not run the expected policy: {named}.*HIL firmware"):
        HilLink(board.port, expect=other)
    with HilLink(board.port) as link:   # the refused link let go of the port
        assert link.board.n_in == N_IN


def test_an_observation_of_the_wrong_size_is_refused_before_sending(board):
    with HilLink(board.port) as link:
        with pytest.raises(ValueError, match=rf"shape \(39,\) given; the board's policy takes \({N_IN},\)"):
            link.infer(np.zeros(N_IN - 1, np.float32))
        assert link.stats.frames_sent == 1


def raw_frame(seq: int, crc: bytes) -> bytes:
    """A HELLO with a CRC given by the test."""
    return b"\0" + cobs_encode(HEADER.pack(1, MessageType.HELLO, seq, 0) + crc) + b"\0"


@pytest.mark.parametrize("frame, seq, code, detail", [
    (encode_frame(MessageType.INFER, 11, bytes(4 * (N_IN - 1))), 11, ErrorCode.BAD_LENGTH, 4 * N_IN),
    (encode_frame(MessageType.HELLO, 12, version=2), 12, ErrorCode.BAD_VERSION, 1),
    (encode_frame(0x33, 13), 13, ErrorCode.UNKNOWN_TYPE, 0x33),
    (encode_frame(MessageType.ACTION, 14), 14, ErrorCode.UNKNOWN_TYPE, MessageType.ACTION),
    (raw_frame(15, b"\x12\x34"), 15, ErrorCode.BAD_CRC, 0),
    (b"\0" + cobs_encode(b"\x01\x02\x03") + b"\0", SEQ_UNKNOWN, ErrorCode.BAD_FRAME, 3),
    (b"\x05ab\0", SEQ_UNKNOWN, ErrorCode.BAD_FRAME, 2),
    (b"\0" + cobs_encode(bytes(range(1, 201)) * 2) + b"\0", SEQ_UNKNOWN, ErrorCode.TOO_LONG, 4 * N_IN),
])
def test_the_board_answers_a_bad_frame_with_the_error_and_its_number(frame, seq, code, detail, board):
    with serial.Serial(board.port, timeout=0.05) as line:
        line.write(frame)
        reader, found, deadline = FrameReader(), [], time.monotonic() + 5
        while not found and time.monotonic() < deadline:
            found = reader.feed(line.read(max(1, line.in_waiting)))
    assert len(found) == 1 and isinstance(found[0], Frame) and found[0].type == MessageType.ERROR
    assert found[0].seq == seq and parse_error(found[0]) == (code, detail)


# ---- fuzz: random, truncated and bit-flipped frames ----

def fuzz_pieces(rng: np.random.Generator, count: int, n_in: int) -> list[bytes]:
    """`count` pieces of damage, each followed by a marker HELLO whose sequence number is its index."""
    def valid() -> bytes:
        payload = rng.standard_normal(n_in).astype(np.float32).tobytes()
        return encode_frame(MessageType.INFER, int(rng.integers(0xFFFF)), payload)

    not_hello = [t for t in range(256) if t != MessageType.HELLO]   # only markers are answered with INFO

    pieces = []
    for i in range(count):
        kind = i % 6
        if kind == 0:                       # random bytes, zeros included
            damage = rng.integers(0, 256, rng.integers(1, 400), dtype=np.uint8).tobytes()
        elif kind == 1:                     # a valid frame cut short, with or without a delimiter after it
            frame = valid()
            damage = frame[:rng.integers(1, len(frame) - 1)] + (b"\0" if rng.random() < 0.5 else b"")
        elif kind == 2:                     # a valid frame with 1 to 3 bits flipped
            frame = bytearray(valid())
            for _ in range(rng.integers(1, 4)):
                frame[rng.integers(len(frame))] ^= 1 << int(rng.integers(8))
            damage = bytes(frame)
        elif kind == 3:                     # intact frames: random type, version, payload and length field
            payload = rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes()
            length = len(payload) if rng.random() < 0.5 else int(rng.integers(0x10000))
            body = HEADER.pack(int(rng.choice([1, 1, int(rng.integers(256))])), int(rng.choice(not_hello)),
                               int(rng.integers(0xFFFF)), length) + payload
            damage = b"\0" + cobs_encode(body + CRC.pack(crc16(body))) + b"\0"
        elif kind == 4:                     # random bytes made into valid COBS: passes framing, fails the CRC
            damage = b"\0" + cobs_encode(rng.integers(0, 256, rng.integers(1, 300), dtype=np.uint8).tobytes()) + b"\0"
        else:                               # a run without delimiter, longer than any frame
            damage = rng.integers(1, 256, rng.integers(300, 3000), dtype=np.uint8).tobytes()
        pieces.append(damage + encode_frame(MessageType.HELLO, i, MARKER))
    return pieces


def markers(found: list[Frame | BadFrame], message: MessageType) -> list[int]:
    return [f.seq for f in found if isinstance(f, Frame) and f.type == message
            and (message != MessageType.HELLO or f.payload == MARKER)]


def test_cobs_round_trips_any_data():
    rng = np.random.default_rng(4)
    cases = [b"", b"\0", b"\0\0", bytes(range(1, 255)), bytes(range(1, 256)), bytes(254) + b"x",
             b"\x01" * 254 + b"\0", b"\x01" * 508, *(rng.integers(0, 4, rng.integers(0, 700), dtype=np.uint8)
                                                     .tobytes() for _ in range(300))]
    for data in cases:
        encoded = cobs_encode(data)
        assert b"\0" not in encoded and cobs_decode(encoded) == data
        assert len(encoded) <= len(data) + len(data) // 254 + 1


def test_python_decoder_survives_fuzz_and_recovers_every_frame_after_it():
    rng = np.random.default_rng(5)
    pieces = fuzz_pieces(rng, 3000, N_IN)
    stream = b"".join(pieces)
    reader = FrameReader(max_payload=4 * N_IN)
    found: list[Frame | BadFrame] = []
    at = 0
    while at < len(stream):   # arbitrary read sizes, as a serial port delivers them
        step = int(rng.integers(1, 600))
        found += reader.feed(stream[at:at + step])
        at += step
        assert len(reader._buffer) <= reader.max_wire
    assert markers(found, MessageType.HELLO) == list(range(len(pieces)))
    reasons = {f.reason for f in found if isinstance(f, BadFrame)}
    assert reasons == {"cobs", "short", "crc", "length", "too long"}


# A policy written by hand to the generated-C contract, with no observation layout: cheap to build with
# sanitizers (the generated one takes ~15 s), and exact in numpy: doubling and one addition in float32.
TINY_POLICY_H = """#ifndef NANOSWARM_POLICY_H
#define NANOSWARM_POLICY_H
#define NANOSWARM_POLICY_N_IN 40
#define NANOSWARM_POLICY_N_OUT 4
void nanoswarm_policy(const float *input, float *output);
#endif
"""
TINY_POLICY_C = """#include "policy.h"
void nanoswarm_policy(const float *input, float *output)
{
  for (int i = 0; i < NANOSWARM_POLICY_N_OUT; i++) {
    output[i] = 2.0f * input[i] + input[NANOSWARM_POLICY_N_IN - 1 - i];
  }
}
"""


def tiny_policy(obs: np.ndarray) -> np.ndarray:
    return np.float32(2) * obs[:4] + obs[::-1][:4]


def test_c_decoder_survives_fuzz_under_sanitizers_and_keeps_answering(tmp_path, observations):
    """Built with ASan and UBSan, any out-of-bounds access or undefined behaviour would end the board."""
    (tmp_path / "policy.h").write_text(TINY_POLICY_H)
    (tmp_path / "policy.c").write_text(TINY_POLICY_C)
    sanitized = write_hil_firmware(tmp_path, tmp_path / "asan")
    binary = build_firmware(sanitized, "host", extra_cflags=SANITIZERS)
    pieces = fuzz_pieces(np.random.default_rng(6), 3000, N_IN)
    with host_board(binary) as board, serial.Serial(board.port, timeout=0.05) as line:
        answers: list[Frame | BadFrame] = []
        stop = threading.Event()

        def listen() -> None:
            reader = FrameReader()
            try:
                while not stop.is_set():
                    new = reader.feed(line.read(max(1, line.in_waiting)))
                    answers.extend(new)
                    if new and markers(new, MessageType.INFO)[-1:] == [len(pieces) - 1]:
                        return
            except serial.SerialException:
                return   # the board is gone: the check of its process below says why

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        try:
            line.write(b"".join(pieces))
        except serial.SerialException:
            pass         # the board is gone: the check of its process below says why
        listener.join(timeout=60)
        stop.set()
        listener.join()
        # it answered every marker, and all it said were intact frames
        assert markers(answers, MessageType.INFO) == list(range(len(pieces))), last_words(board)
        assert all(isinstance(a, Frame) for a in answers)
        assert {a.type for a in answers} <= {MessageType.INFO, MessageType.ACTION, MessageType.ERROR}

        with HilLink(board.port) as link:
            assert link.board.frames_bad > 1000 and link.board.num_neighbors is None
            assert same_bits(link.infer(observations[0]), tiny_policy(observations[0]))


# ---- the firmware that ships with the export, and the STM32 board ----

def test_the_firmware_folder_builds_on_its_own(firmware, export_dir):
    names = {p.name for p in firmware.iterdir()}
    assert {"nsw_hil.c", "nsw_hil.h", "host_main.c", "stm32_uart_main.c", "Makefile", "README.md", "startup.c",
            "m4.ld", "policy.c", "policy.h", "nsw_hil_policy_id.h"} <= names
    assert f"0x{policy_id(export_dir / 'c'):08x}u" in (firmware / "nsw_hil_policy_id.h").read_text()
    with pytest.raises(HilBuildError, match="holds no generated policy.*nanoswarm export"):
        write_hil_firmware(export_dir / "nothing_here", export_dir / "hil2")


@pytest.mark.parametrize("uart", [1, 2])
def test_stm32_firmware_cross_compiles_with_strict_flags_and_no_double(uart, firmware, tmp_path):
    folder = write_hil_firmware(firmware, tmp_path / f"uart{uart}")
    elf = build_firmware(folder, "stm32", extra_cflags=(f"-DNSW_HIL_UART={uart}",))
    makefile = (folder / "Makefile").read_text()
    assert all(flag in makefile for flag in ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                                             "-Wall", "-Wextra", "-Werror"))
    listing = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(elf)],
                             capture_output=True, text=True, check=True).stdout
    assert Disassembly(listing).soft_float_findings("main") == []


def test_stm32_board_on_qemu_answers_like_the_host_policy(firmware, export_dir, reference, observations, tmp_path):
    elf = build_firmware(write_hil_firmware(firmware, tmp_path / "stm32"), "stm32")
    with qemu_board(elf) as board:
        # QEMU notices a pty's user with up to a second's delay: the greeting may need a retry
        with HilLink(board.port, timeout_s=1.0, expect=PolicySignature.from_policy_dir(export_dir)) as link:
            actions = np.stack([link.infer(obs) for obs in observations[:20]])
            assert link.infer_timed(observations[0]).board_us == 0   # QEMU models no DWT cycle counter
    # arm-none-eabi-gcc may fuse multiply-adds and newlib's libm is not glibc's
    np.testing.assert_allclose(actions, reference(observations[:20]), rtol=1e-5, atol=1e-6)


def test_check_board_runs_the_cli_path_on_a_host_board(export_dir, tmp_path):
    result = check_board("host", export_dir, n=40, work_dir=tmp_path)
    assert result["bench"]["inferences"] == 40 and result["bench"]["max_abs_err"] == 0.0
    assert result["board"]["policy_id"] == policy_id(export_dir / "c") and result["failures"] == []
    assert result["link"]["frames_sent"] == 42 and result["link"]["retries"] == 0
    json.dumps(result)
