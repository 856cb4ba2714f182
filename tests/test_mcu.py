"""Specification of the Cortex-M4F harness: real arm-none-eabi-gcc, real QEMU netduinoplus2, and the same
C built by host gcc as the oracle. The policies are small hand-written C files that follow the
generated-C contract (policy.h / policy.c, nanoswarm_policy, NANOSWARM_POLICY_N_IN / _N_OUT), plus one
end-to-end run of an exported and generated policy against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nanoswarm.export.codegen.generate import generate_c
from nanoswarm.export.host import compile_host, onnxruntime_actions
from nanoswarm.export.mcu import SOFT_FLOAT_ROUTINE, McuInputError, McuResult, McuToolchainError, run_on_mcu
from nanoswarm.export.observations import random_observations
from nanoswarm.export.onnx_export import action_metadata, export_onnx
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.params import load_params

N_IN, N_OUT = 24, 4

HEADER = """#ifndef NANOSWARM_POLICY_H
#define NANOSWARM_POLICY_H
#define NANOSWARM_POLICY_N_IN {n_in}
#define NANOSWARM_POLICY_N_OUT {n_out}
void nanoswarm_policy(const float *input, float *output);
#endif
"""

MLP = """#include <math.h>
#include "policy.h"
static const float w1[{h}][{n_in}] = {w1};
static const float b1[{h}] = {b1};
static const float w2[{n_out}][{h}] = {w2};
static const float b2[{n_out}] = {b2};
static float hidden[{h}];

void nanoswarm_policy(const float *input, float *output)
{{
    for (int i = 0; i < {h}; ++i) {{
        float acc = b1[i];
        for (int j = 0; j < {n_in}; ++j) acc += w1[i][j] * input[j];
        hidden[i] = tanhf(acc);
    }}
    for (int i = 0; i < {n_out}; ++i) {{
        float acc = b2[i];
        for (int j = 0; j < {h}; ++j) acc += w2[i][j] * hidden[j];
        output[i] = tanhf(acc);
    }}
}}
"""

COPY = """#include "policy.h"
void nanoswarm_policy(const float *input, float *output)
{
    for (int i = 0; i < NANOSWARM_POLICY_N_OUT; ++i) output[i] = input[i];
}
"""

# 2 + 1 + 2 * iterations + 1 instructions, read off the code itself (naked: no prologue or epilogue).
LOOP = """#include "policy.h"
__attribute__((naked)) void nanoswarm_policy(const float *input, float *output)
{{
    __asm volatile("vldr s0, [r0]\\n vstr s0, [r1]\\n movs r3, #{iterations}\\n"
                   "1: subs r3, r3, #1\\n bne 1b\\n bx lr\\n");
}}
"""

DOUBLE = """#include <math.h>
#include "policy.h"
void nanoswarm_policy(const float *input, float *output)
{
    for (int i = 0; i < NANOSWARM_POLICY_N_OUT; ++i) output[i] = (float)tanh((double)input[i] * 1.5);
}
"""

HANG = """#include "policy.h"
void nanoswarm_policy(const float *input, float *output)
{
    for (;;) {
    }
}
"""

FAULT = """#include "policy.h"
void nanoswarm_policy(const float *input, float *output)
{
    if (input[0] > 0.0f) __asm volatile("udf #0");
    output[0] = input[0];
}
"""


def c_array(values: np.ndarray) -> str:
    if values.ndim == 1:
        return "{" + ", ".join(f"{v:.9g}f" for v in values) + "}"
    return "{" + ", ".join(c_array(row) for row in values) + "}"


def write_policy(folder: Path, source: str, n_in: int = N_IN, n_out: int = N_OUT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.h").write_text(HEADER.format(n_in=n_in, n_out=n_out))
    (folder / "policy.c").write_text(source)
    return folder


def mlp_source(hidden: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    w1, w2 = rng.normal(0, 0.4, (hidden, N_IN)), rng.normal(0, 0.4, (N_OUT, hidden))
    return MLP.format(h=hidden, n_in=N_IN, n_out=N_OUT, w1=c_array(w1), b1=c_array(rng.normal(0, 0.1, hidden)),
                      w2=c_array(w2), b2=c_array(rng.normal(0, 0.1, N_OUT)))


def observations(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, (n, N_IN)).astype(np.float32)


@pytest.fixture(scope="module")
def mlp32(tmp_path_factory) -> tuple[Path, np.ndarray, McuResult]:
    c_dir = write_policy(tmp_path_factory.mktemp("mlp32"), mlp_source(32))
    obs = observations(64)
    return c_dir, obs, run_on_mcu(c_dir, obs, c_dir / "build")


def test_outputs_match_host_gcc_build_of_the_same_c(mlp32):
    c_dir, obs, result = mlp32
    assert result.outputs.shape == (64, N_OUT) and result.outputs.dtype == np.float32
    assert result.outputs.std(axis=0).min() > 0.1  # a real comparison, not of saturated constants
    host = compile_host(c_dir, c_dir / "host")  # the oracle: the same C built by host gcc, called via ctypes
    # not bit-exact: arm-none-eabi-gcc fuses multiply-adds (vfma) and newlib's tanhf is not glibc's
    np.testing.assert_allclose(result.outputs, host(obs), rtol=1e-5, atol=1e-6)


def test_outputs_come_back_bit_exact(tmp_path):
    c_dir = write_policy(tmp_path, COPY, n_in=8, n_out=8)
    special = np.array([-0.0, np.inf, -np.inf, 1e-45, 3.4028235e38, np.pi, 1 / 3, 0.0], np.float32)
    obs = np.stack([special, special[::-1]])
    obs.view(np.uint32)[0, 7] = 0x7FC00001  # a NaN with a payload
    result = run_on_mcu(c_dir, obs, tmp_path / "build")
    np.testing.assert_array_equal(result.outputs.view(np.uint32), obs.view(np.uint32))


@pytest.mark.parametrize("iterations", [100, 250])
def test_instruction_count_is_exact_on_a_known_loop(iterations, tmp_path):
    c_dir = write_policy(tmp_path, LOOP.format(iterations=iterations), n_in=1, n_out=1)
    result = run_on_mcu(c_dir, np.ones((3, 1), np.float32), tmp_path / "build")
    assert result.instructions_per_inference == result.instructions_max == 2 * iterations + 4
    assert result.stack == 0  # a naked function pushes nothing


def test_instruction_count_is_deterministic(mlp32, tmp_path):
    c_dir, obs, first = mlp32
    again = run_on_mcu(c_dir, obs, tmp_path / "again")
    assert again.instructions_per_inference == first.instructions_per_inference
    assert again.instructions_max == first.instructions_max
    assert again.stack == first.stack


def test_instruction_count_scales_with_work(mlp32, tmp_path):
    _, obs, small = mlp32
    c_dir = write_policy(tmp_path, mlp_source(64))  # twice the hidden width: twice the MACs and tanhf calls
    large = run_on_mcu(c_dir, obs, tmp_path / "build")
    assert 1.7 < large.instructions_per_inference / small.instructions_per_inference < 2.3
    assert small.instructions_max >= small.instructions_per_inference > 1000


def test_memory_numbers_are_the_policys_own(mlp32):
    _, _, result = mlp32
    weights = 4 * (32 * N_IN + 32 + N_OUT * 32 + N_OUT)
    assert weights <= result.rodata < weights + 64  # const weights sit in flash
    assert result.bss == 4 * 32                       # the static hidden activations
    assert result.data == 0
    assert 0 < result.text < 1024
    assert 0 < result.stack < 512                     # its own frame plus tanhf's
    assert result.flash_bytes == result.text + result.rodata + result.data
    assert result.ram_bytes == result.data + result.bss + result.stack


def test_float_only_policy_has_no_double_precision_code(mlp32):
    assert mlp32[2].double_precision_symbols == []


def test_double_precision_code_is_caught(tmp_path):
    c_dir = write_policy(tmp_path, DOUBLE)
    result = run_on_mcu(c_dir, observations(4), tmp_path / "build")
    found = result.double_precision_symbols
    assert {"__aeabi_f2d", "__aeabi_d2f"} <= set(found)
    assert any(name in found for name in ("__aeabi_dmul", "__muldf3"))


def test_soft_float_names_are_told_apart_from_integer_helpers():
    flagged = ["__aeabi_dadd", "__aeabi_dcmplt", "__aeabi_f2d", "__aeabi_d2f", "__aeabi_i2d", "__aeabi_ul2f",
               "__aeabi_fmul", "__aeabi_fcmpgt", "__adddf3", "__mulsf3", "__extendsfdf2", "__truncdfsf2",
               "__fixdfsi", "__fixunssfdi", "__floatsidf", "__floatundisf", "__ltdf2", "__unordsf2"]
    spared = ["__aeabi_idiv", "__aeabi_uidivmod", "__aeabi_ldivmod", "__aeabi_memcpy4", "__aeabi_memclr",
              "__aeabi_llsl", "__sfp", "__sflush_r", "tanhf", "expf", "__ieee754_expf", "nanoswarm_policy"]
    assert all(SOFT_FLOAT_ROUTINE.match(name) for name in flagged)
    assert not any(SOFT_FLOAT_ROUTINE.match(name) for name in spared)


def test_hanging_policy_times_out_with_a_clear_error(tmp_path):
    c_dir = write_policy(tmp_path, HANG)
    with pytest.raises(McuToolchainError, match="did not finish within 2 s.*endless loop"):
        run_on_mcu(c_dir, observations(2), tmp_path / "build", timeout_s=2)


def test_faulting_policy_names_the_fault(tmp_path):
    c_dir = write_policy(tmp_path, FAULT, n_in=1, n_out=1)
    with pytest.raises(McuToolchainError, match="HardFault .* in nanoswarm_policy .*UNDEFINSTR"):
        run_on_mcu(c_dir, np.array([[-1.0], [1.0]], np.float32), tmp_path / "build")


def test_missing_toolchain_names_the_debian_packages(mlp32, tmp_path, monkeypatch):
    c_dir, obs, _ = mlp32
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(McuToolchainError, match="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"):
        run_on_mcu(c_dir, obs, tmp_path / "build")


def test_bad_inputs_name_the_contract(mlp32, tmp_path):
    c_dir, obs, _ = mlp32
    with pytest.raises(McuInputError, match=r"\(N, 24\)"):
        run_on_mcu(c_dir, obs[:, :10], tmp_path / "build")
    with pytest.raises(McuInputError, match="policy.c and policy.h"):
        run_on_mcu(tmp_path, obs, tmp_path / "build")
    (tmp_path / "policy.c").write_text(COPY)
    (tmp_path / "policy.h").write_text("void nanoswarm_policy(const float *input, float *output);\n")
    with pytest.raises(McuInputError, match="NANOSWARM_POLICY_N_IN"):
        run_on_mcu(tmp_path, obs, tmp_path / "build")


def test_exported_and_generated_policy_matches_onnxruntime_on_the_mcu(tmp_path):
    torch.manual_seed(0)
    policy = SwarmPolicy(ObservationLayout(num_neighbors=2), PolicyConfig(actor="attention", hidden=8, head=(16,)))
    with torch.no_grad():
        policy.actor.mean.weight.normal_(0.0, 0.5)
    model = tmp_path / "policy.onnx"
    export_onnx(policy, model, source_sha256="0" * 64, action_meta=action_metadata(load_params("crazyflie21_sysid")))
    generate_c(model, tmp_path / "c")
    obs = random_observations(policy.layout, 32, seed=0)
    result = run_on_mcu(tmp_path / "c", obs, tmp_path / "build")
    np.testing.assert_allclose(result.outputs, onnxruntime_actions(model, obs), atol=1e-5)
    assert result.double_precision_symbols == []
    assert result.instructions_per_inference > 1000 and result.stack > 0
