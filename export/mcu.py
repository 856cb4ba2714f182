"""Run generated policy C on an emulated Crazyflie MCU: outputs, instructions, memory and float hygiene.

`run_on_mcu` cross-compiles a folder holding `policy.c` / `policy.h` (the generated-C contract) for the
STM32F405's Cortex-M4F with the flags the firmware uses, links it into the harness of `export/mcu/`
(start-up, linker script, a main that embeds the sample observations), runs it on QEMU's
`netduinoplus2` and returns what the MCU computed, bit for bit.

How instructions are counted, and why this way: QEMU 7.2 models the STM32's TIM2 with a 1 GHz input
clock, and `-icount shift=0` makes every guest instruction advance virtual time by exactly 1 ns, so
TIM2's counter read in the guest is an exact instruction counter. The harness reads it around every
call and subtracts the cost of calling a one-instruction function through the same wrapper (see
`mcu/harness.c`). That gives exact per-inference counts from one run, needs nothing beyond the Debian
`qemu-system-arm` package (the TCG `insn` plugin would have to be built from QEMU's sources on every CI
machine), and is checked against a loop whose count is known from its code (tests/test_mcu.py).
SysTick, the other option, advances only 0.168 ticks per instruction, so it counts in steps of ~6.
QEMU has no pipeline or wait-state model: instruction counts are a deterministic proxy for time, to
gate regressions, not a cycle count.

Memory is the policy object's own sections (`size -A` on policy.o built with the same flags) plus the
deepest stack one inference used, measured in the guest by painting free RAM and finding the
high-water mark. Library code the policy calls (newlib's tanhf, expf) is linked from the toolchain
and not counted in `text`.

The float check follows calls from `nanoswarm_policy` through the linked image's disassembly and
names every double-precision or soft-float routine (`__aeabi_dmul`, `__aeabi_f2d`, `__adddf3`, ...) and
every `.f64` instruction reachable from it: on the M4's single-precision FPU those are slow library
calls or undefined instructions. Calls through function pointers cannot be followed.
"""

from __future__ import annotations

import bisect
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nanoswarm.export.errors import McuInputError, McuToolchainError

CFLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2",
          "-ffunction-sections", "-fdata-sections", "-Wdouble-promotion", "-fsingle-precision-constant")
DEBIAN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
HARNESS_DIR = Path(__file__).resolve().parent / "mcu"
ENTRY_POINT = "nanoswarm_policy"
MAX_SAMPLES = 1024  # keeps a run short and the embedded samples well inside the 1 MiB flash
QEMU_ARGS = ("-M", "netduinoplus2", "-display", "none", "-serial", "null", "-monitor", "none",
             "-icount", "shift=0", "-semihosting-config", "enable=on,target=native")

# Routines that mean double-precision or software floating point on a hard-float Cortex-M4F: the ARM
# EABI helpers (__aeabi_dadd, __aeabi_f2d, __aeabi_fmul, __aeabi_i2f, ...) and libgcc's generic names
# for the same code (__adddf3, __extendsfdf2, __fixdfsi, __floatsidf, __ltsf2, ...).
SOFT_FLOAT_ROUTINE = re.compile(
    r"^__aeabi_(d\w+|\w+2d|\w+2f|f(add|sub|rsub|mul|div|neg|cmp\w*|2\w+))$"
    r"|^__(add|sub|mul|div|neg)(sf|df)3$|^__(extendsfdf|truncdfsf)2$|^__fix(uns)?(sf|df)[sdt]i$"
    r"|^__float(un)?[sdt]i(sf|df)$|^__(eq|ne|lt|le|gt|ge|unord|cmp)(sf|df)2$")

# Configurable Fault Status Register bits worth naming in an error message (ARMv7-M ARM, B3.2.15).
CFSR_BITS = {
    0: "IACCVIOL: instruction fetch from a protected region", 1: "DACCVIOL: data access violation",
    8: "IBUSERR: instruction fetch bus error", 9: "PRECISERR: data bus error",
    10: "IMPRECISERR: imprecise data bus error",
    16: "UNDEFINSTR: undefined instruction (f64 code built for another -mfpu?)",
    17: "INVSTATE: invalid execution state", 18: "INVPC: invalid exception return",
    19: "NOCP: coprocessor (FPU) disabled or absent", 24: "UNALIGNED: unaligned access",
    25: "DIVBYZERO: integer division by zero",
}
EXCEPTIONS = {2: "NMI", 3: "HardFault", 4: "MemManage", 5: "BusFault", 6: "UsageFault"}


@dataclass
class McuResult:
    """What one harness run measured; byte counts are the policy's own (see the module docstring)."""

    outputs: np.ndarray                # (N, n_out) float32, bit-exact copies of the MCU's results
    instructions_per_inference: int    # mean over the samples (tanhf and friends branch on their input)
    instructions_max: int              # the worst sample: what a real-time budget must allow for
    text: int
    rodata: int
    data: int
    bss: int
    stack: int                         # deepest stack use of one inference
    double_precision_symbols: list[str]
    flash_bytes: int = field(init=False)
    ram_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.flash_bytes = self.text + self.rodata + self.data
        self.ram_bytes = self.data + self.bss + self.stack


def run_on_mcu(c_dir: Path, observations: np.ndarray, work_dir: Path, *, timeout_s: float = 60.0) -> McuResult:
    """Run every observation (N, n_in) through `nanoswarm_policy` on the emulated STM32F405.

    Build products and QEMU's output land in `work_dir`. `timeout_s` bounds the QEMU run: a policy
    that never returns ends in a `McuToolchainError` instead of a hung test.
    """
    c_dir, work_dir = Path(c_dir), Path(work_dir)
    n_in, n_out = policy_io_sizes(c_dir)
    samples = _check_observations(observations, n_in)
    gcc, size, objdump, qemu = (_tool(name) for name in (
        "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-objdump", "qemu-system-arm"))
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "samples.h").write_text(samples_header(samples))
    includes = (f"-I{c_dir}", f"-I{work_dir}")
    policy_obj = work_dir / "policy.o"
    _run_tool(gcc, *CFLAGS, *includes, "-c", str(c_dir / "policy.c"), "-o", str(policy_obj))
    elf = work_dir / "harness.elf"
    _run_tool(gcc, *CFLAGS, *includes, "-nostartfiles", "--specs=rdimon.specs", "-T", str(HARNESS_DIR / "m4.ld"),
             "-Wl,--gc-sections", str(HARNESS_DIR / "startup.c"), str(HARNESS_DIR / "harness.c"),
             str(policy_obj), "-lm", "-o", str(elf))
    sections = section_sizes(size, policy_obj)
    code = Disassembly(_run_tool(objdump, "-d", "--no-show-raw-insn", str(elf)))
    outputs, counts, stack = _run_qemu(qemu, elf, code, len(samples), n_out, timeout_s, work_dir)
    return McuResult(
        outputs=outputs, instructions_per_inference=int(round(float(counts.mean()))),
        instructions_max=int(counts.max()), stack=stack,
        double_precision_symbols=code.soft_float_findings(ENTRY_POINT), **sections)


def policy_io_sizes(c_dir: Path) -> tuple[int, int]:
    """NANOSWARM_POLICY_N_IN and _N_OUT from the folder's policy.h."""
    header = Path(c_dir) / "policy.h"
    if not header.is_file() or not (Path(c_dir) / "policy.c").is_file():
        raise McuInputError(f"{c_dir} must hold policy.c and policy.h (the generated C policy); "
                            "generate them first")
    text = header.read_text()
    sizes = []
    for name in ("NANOSWARM_POLICY_N_IN", "NANOSWARM_POLICY_N_OUT"):
        match = re.search(rf"^\s*#\s*define\s+{name}\s+\(?(\d+)u?\)?\s*$", text, re.MULTILINE)
        if match is None:
            raise McuInputError(f"{header} does not define {name} as a number; the generated header must "
                                "(see the generated-C contract)")
        sizes.append(int(match.group(1)))
    return sizes[0], sizes[1]


def _check_observations(observations: np.ndarray, n_in: int) -> np.ndarray:
    samples = np.ascontiguousarray(observations, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[1] != n_in:
        raise McuInputError(f"observations have shape {samples.shape}, the policy takes (N, {n_in})")
    if not 1 <= len(samples) <= MAX_SAMPLES:
        raise McuInputError(f"{len(samples)} observations given; run 1 to {MAX_SAMPLES} per call "
                            "(QEMU runs are meant to be short: pass a sample)")
    return samples


def samples_header(samples: np.ndarray) -> str:
    """C header embedding the samples as their exact float bit patterns (no decimal rounding)."""
    n, n_in = samples.shape
    words = samples.reshape(-1).view(np.uint32)
    rows = ",\n".join("    " + ", ".join(f"0x{w:08x}u" for w in words[i:i + 8]) for i in range(0, words.size, 8))
    return (f"/* {n} sample observations for the MCU harness, written by nanoswarm.export.mcu. */\n"
            "#include <stdint.h>\n"
            f"#define HARNESS_SAMPLES {n}u\n"
            "static const union {\n"
            f"    uint32_t bits[{n * n_in}];\n"
            f"    float values[{n}][{n_in}];\n"
            "} harness_samples = {{\n"
            f"{rows}\n}}}};\n")


def section_sizes(size_tool: str, obj: Path) -> dict[str, int]:
    """Bytes of .text, .rodata, .data and .bss (each with its -ffunction/-fdata-sections children)."""
    totals = dict.fromkeys(("text", "rodata", "data", "bss"), 0)
    for line in _run_tool(size_tool, "-A", str(obj)).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            kind = parts[0].lstrip(".").split(".")[0]
            if kind in totals:
                totals[kind] += int(parts[1])
    return totals


class Disassembly:
    """Functions of a linked image with their instructions, from `objdump -d --no-show-raw-insn`."""

    _FUNCTION = re.compile(r"^([0-9a-f]+) <([^>]+)>:$")
    _INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
    _BRANCH_TARGET = re.compile(r"^[0-9a-f]+ <([^>+]+)(\+0x[0-9a-f]+)?>")

    def __init__(self, listing: str):
        self.mnemonics: dict[str, list[str]] = {}
        self.callees: dict[str, set[str]] = {}
        self._starts: list[int] = []
        self._names: list[str] = []
        current = None
        for line in listing.splitlines():
            if match := self._FUNCTION.match(line):
                current = match.group(2)
                self.mnemonics.setdefault(current, [])
                self.callees.setdefault(current, set())
                self._starts.append(int(match.group(1), 16))
                self._names.append(current)
            elif current is not None and (match := self._INSTRUCTION.match(line)):
                mnemonic, operands = match.group(2), match.group(3)
                self.mnemonics[current].append(mnemonic)
                target = self._BRANCH_TARGET.match(operands)
                if mnemonic.startswith("b") and target and target.group(1) != current:
                    self.callees[current].add(target.group(1))

    def reachable(self, root: str) -> set[str]:
        """Functions `root` can reach through direct calls and branches (tail calls included)."""
        seen, todo = set(), [root]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.callees.get(name, ()))
        return seen

    def soft_float_findings(self, root: str) -> list[str]:
        """Double-precision / soft-float routines and `.f64` instructions reachable from `root`."""
        if root not in self.mnemonics:
            raise McuToolchainError(f"the linked image has no function {root}; policy.c must define it")
        found = set()
        for name in self.reachable(root):
            if SOFT_FLOAT_ROUTINE.match(name):
                found.add(name)
            found.update(f"{m} in {name}" for m in self.mnemonics.get(name, ()) if ".f64" in m)
        return sorted(found)

    def function_at(self, address: int) -> str:
        index = bisect.bisect_right(self._starts, address) - 1
        return self._names[index] if index >= 0 else "?"


def _run_qemu(qemu: str, elf: Path, code: Disassembly, n: int, n_out: int, timeout_s: float,
              work_dir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Run the harness and parse its report: outputs (n, n_out), instruction counts (n,), stack bytes."""
    try:
        run = subprocess.run([qemu, *QEMU_ARGS, "-kernel", str(elf)], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise McuToolchainError(
            f"QEMU did not finish within {timeout_s:g} s: {ENTRY_POINT} did not return for one of the {n} "
            "samples (an endless loop?), or the model needs more time; fix the policy C or raise timeout_s"
        ) from None
    log = run.stdout + run.stderr  # semihosting stdio goes to stdout, the fault report (SYS_WRITE0) to stderr
    (work_dir / "qemu.log").write_text(log)
    if fault := re.search(r"FAULT exception=([0-9a-f]+) cfsr=([0-9a-f]+) pc=([0-9a-f]+)", log):
        raise McuToolchainError(_describe_fault(*(int(g, 16) for g in fault.groups()), code))
    if "stack overflow" in run.stdout:
        raise McuToolchainError(f"one inference used more stack than the free RAM of the 128 KiB SRAM; "
                                f"move large buffers of {ENTRY_POINT} to static storage")
    stack = re.search(r"^stack (\d+)$", run.stdout, re.MULTILINE)
    rows = [line.split()[2:] for line in run.stdout.splitlines() if line.startswith("sample ")]
    if (run.returncode != 0 or stack is None or "done" not in run.stdout or len(rows) != n
            or any(len(row) != n_out + 1 for row in rows)):
        raise McuToolchainError(f"the harness run failed (QEMU exit status {run.returncode}); its output is in "
                                f"{work_dir / 'qemu.log'}:\n{log[-2000:]}")
    counts = np.array([int(row[0]) for row in rows], dtype=np.int64)
    bits = np.array([[int(word, 16) for word in row[1:]] for row in rows], dtype=np.uint32)
    return bits.view(np.float32), counts, int(stack.group(1))


def _describe_fault(exception: int, cfsr: int, pc: int, code: Disassembly) -> str:
    causes = [text for bit, text in CFSR_BITS.items() if cfsr >> bit & 1] or [f"CFSR 0x{cfsr:08x}"]
    return (f"the policy faulted on the emulated Cortex-M4: {EXCEPTIONS.get(exception, exception)} at pc "
            f"0x{pc:08x} in {code.function_at(pc)} ({'; '.join(causes)}); fix the generated C")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise McuToolchainError(f"{name} is not installed; install the Debian packages {DEBIAN_PACKAGES} "
                                f"(sudo apt-get install {DEBIAN_PACKAGES}, or `make toolchain`)")
    return path


def _run_tool(*command: str) -> str:
    """stdout of a toolchain command; its stderr, with the fix where one is known, if it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return result.stdout
    if "rdimon.specs" in result.stderr:
        raise McuToolchainError("newlib for arm-none-eabi (rdimon.specs) is missing; install the Debian package "
                                f"libnewlib-arm-none-eabi (all needed: {DEBIAN_PACKAGES})")
    raise McuToolchainError(f"{Path(command[0]).name} failed:\n{result.stderr.strip()}")
