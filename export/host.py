"""The generated C policy on the host: compiled with gcc into a shared library, called through ctypes.

This is how the generated code is checked against onnxruntime: the very files that go to the
Crazyflie, built with strict flags (C99, every warning an error, no implicit double), run over
thousands of observations at once through a small batch wrapper compiled alongside.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
from nanoswarm.export.errors import HostBuildError

HOST_CFLAGS = ("-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion",
               "-fsingle-precision-constant", "-O2", "-shared", "-fPIC")

BATCH_WRAPPER = """\
#include "policy.h"

void nanoswarm_policy_batch(const float *input, float *output, long rows);

void nanoswarm_policy_batch(const float *input, float *output, long rows)
{
    for (long i = 0; i < rows; ++i) {
        nanoswarm_policy(input + i * NANOSWARM_POLICY_N_IN, output + i * NANOSWARM_POLICY_N_OUT);
    }
}
"""


class HostPolicy:
    """The compiled policy: `policy(obs)` maps (N, n_in) float32 observations to (N, n_out) actions."""

    def __init__(self, library: Path, n_in: int, n_out: int):
        self.library, self.n_in, self.n_out = library, n_in, n_out
        self._batch = ctypes.CDLL(str(library)).nanoswarm_policy_batch
        self._batch.restype = None
        self._batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.n_in:
            raise ValueError(f"observations of shape {obs.shape} given; the policy takes (N, {self.n_in})")
        out = np.empty((obs.shape[0], self.n_out), dtype=np.float32)
        self._batch(obs.ctypes.data, out.ctypes.data, obs.shape[0])
        return out


def compile_host(c_dir: Path, build_dir: Path) -> HostPolicy:
    """Compile `c_dir/policy.c` (with a batch wrapper) into a shared library in `build_dir` and load it.

    The library's name carries a digest of the sources: a process cannot load two different libraries
    from one path (the loader returns the first), and rebuilding identical sources is skipped.
    """
    c_dir, build_dir = Path(c_dir), Path(build_dir)
    header = (c_dir / "policy.h").read_text()
    source = (c_dir / "policy.c").read_text()
    sizes = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define NANOSWARM_POLICY_(N_IN|N_OUT) (\d+)", header)}
    if len(sizes) != 2:
        raise HostBuildError(f"{c_dir / 'policy.h'} does not define NANOSWARM_POLICY_N_IN and _N_OUT; "
                             "regenerate it with nanoswarm.export.codegen.generate_c")
    digest = hashlib.sha256("\0".join((header, source, BATCH_WRAPPER, *HOST_CFLAGS)).encode()).hexdigest()[:16]
    library = build_dir / f"libpolicy_{digest}.so"
    if not library.exists():
        _build(c_dir, build_dir, library)
    return HostPolicy(library, sizes["N_IN"], sizes["N_OUT"])


def _build(c_dir: Path, build_dir: Path, library: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise HostBuildError("gcc not found on PATH; install it (apt-get install gcc)")
    build_dir.mkdir(parents=True, exist_ok=True)
    wrapper = build_dir / "policy_batch.c"
    wrapper.write_text(BATCH_WRAPPER)
    fd, tmp = tempfile.mkstemp(prefix=f".{library.name}.", dir=build_dir)
    os.close(fd)
    try:
        done = subprocess.run([gcc, *HOST_CFLAGS, f"-I{c_dir}", str(c_dir / "policy.c"), str(wrapper), "-lm",
                               "-o", tmp], capture_output=True, text=True)
        if done.returncode != 0:
            raise HostBuildError(f"gcc failed on {c_dir / 'policy.c'}:\n{done.stderr.strip()}")
        os.replace(tmp, library)      # atomic: parallel test workers never load a half-written file
    finally:
        Path(tmp).unlink(missing_ok=True)


def onnxruntime_actions(model: onnx.ModelProto | str | Path, obs: np.ndarray) -> np.ndarray:
    """The oracle: the ONNX model under onnxruntime on the same observations (N, n_in) -> (N, n_out).

    A model exported with a dynamic batch axis runs all rows at once; one fixed to batch 1, row by row.
    """
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    obs = np.asarray(obs, np.float32)
    rows = obs.shape[0] if not isinstance(feed.shape[0], int) else 1
    shape = [rows, *feed.shape[1:]]
    out = [session.run(None, {feed.name: obs[i:i + rows].reshape(shape)})[0].reshape(rows, -1)
           for i in range(0, obs.shape[0], rows)]
    return np.concatenate(out)
