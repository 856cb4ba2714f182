"""Matrix products (Gemm, MatMul): where a policy spends nearly all of its instructions.

A naive dot product costs the Cortex-M4F about four instructions per multiply-add: two loads, the
FMA and a share of the loop's compare and branch. Here each pass of the inner loop computes a block of
four outputs at once in four independent accumulators, so every input element is loaded once per
four multiply-adds, and the loop over k is unrolled by four with literal bounds to cut its overhead.
Constant right-hand matrices are packed at generation time in exactly the order that loop reads them
(blocks of four output columns, k-major inside a block); the bias, scale and activation that follow
run on each accumulated value before it is stored (`Fusable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nanoswarm.export.codegen.cwriter import CWriter, Terms, flit, index, loops
from nanoswarm.export.codegen.ir import Lowered, Node
from nanoswarm.export.codegen.ops.elementwise import Fusable, PointOp
from nanoswarm.export.codegen.tensors import Shape, Strides, Value, broadcast_strides, contiguous_strides, fresh

LANES = 4     # outputs computed together, one accumulator each
UNROLL = 4    # k steps per pass of the inner loop


@dataclass(eq=False)
class MatMulKernel(Fusable):
    """out[..., m, n] = sum_k a[..., m, k] * b[..., k, n], then the epilogue, over `loop_shape` (..., M, N).

    `b` is either a strided view (`b_strides` over (..., K, N)) or, when `packed`, a constant laid out
    per matrix as blocks of LANES columns, each block k-major (the last block holds the N % LANES rest).
    """

    label: str
    a: Value
    a_strides: Strides          # over (..., M, K); broadcast batch axes have stride 0
    b: Value
    b_strides: Strides          # over (..., K, N); for a packed b only the batch strides are used
    packed: bool
    k: int
    out: Value
    loop_shape: Shape           # type: ignore[misc]
    epilogue: list[PointOp] = field(default_factory=list)

    def reads(self) -> list[Value]:
        return [self.a, self.b, *self.epilogue_operands()]

    def emit(self, w: CWriter) -> None:
        out_strides = contiguous_strides(self.loop_shape)
        epilogue_strides = self.epilogue_strides()
        outer = [self.a_strides[:-1], (*self.b_strides[:-2], 0), out_strides[:-1], *(s[:-1] for s in epilogue_strides)]
        n_size = self.loop_shape[-1]
        full = n_size // LANES * LANES
        with loops(w, self.loop_shape[:-1], outer) as (a, b, out, *operands):
            rows = _Rows(a, b, out, operands, [out_strides[-1], *(s[-1] for s in epilogue_strides)])
            if full > LANES:
                n = w.fresh("n")
                with w.block(f"for (int {n} = 0; {n} < {full}; {n} += {LANES})"):
                    self._block(w, rows, n, LANES)
            elif full:
                with w.block(""):
                    self._block(w, rows, 0, LANES)
            if n_size % LANES:
                with w.block(""):
                    self._block(w, rows, full, n_size % LANES)

    def _b_place(self, n: str | int, lanes: int) -> tuple[Terms, int, int, int]:
        """b[k, n + j] is at terms + offset + k * k_stride + j * lane_stride (relative to its matrix)."""
        if self.packed:
            return ([(n, self.k)], 0, LANES, 1) if isinstance(n, str) else ([], n * self.k, lanes, 1)
        sk, sn = self.b_strides[-2], self.b_strides[-1]
        return ([(n, sn)], 0, sk, sn) if isinstance(n, str) else ([], n * sn, sk, sn)

    def _block(self, w: CWriter, rows: _Rows, n: str | int, lanes: int) -> None:
        """Outputs n .. n + lanes - 1 of one row: accumulate, then epilogue and store each."""
        b_terms, b_offset, b_k, b_lane = self._b_place(n, lanes)
        sa = self.a_strides[-1]
        # pointers to the row of a and the block of b keep the inner index expressions to k alone
        pa, pb = w.fresh("a"), w.fresh("b")
        w.line(f"const float *{pa} = {w.pointer(self.a, rows.a)};")
        w.line(f"const float *{pb} = {w.pointer(self.b, [*rows.b, *b_terms], b_offset)};")
        w.line("float " + ", ".join(f"s{j} = 0.0f" for j in range(lanes)) + ";")

        def step(k: list[str], k0: int) -> None:
            x = w.fresh("x")
            w.line(f"float {x} = {pa}[{index(k0 * sa, [(v, sa) for v in k])}];")
            for j in range(lanes):
                w.line(f"s{j} += {x} * {pb}[{index(k0 * b_k + j * b_lane, [(v, b_k) for v in k])}];")

        unrolled = self.k // UNROLL * UNROLL
        if unrolled > UNROLL:
            k = w.fresh("k")
            with w.block(f"for (int {k} = 0; {k} < {unrolled}; {k} += {UNROLL})"):
                for u in range(UNROLL):
                    step([k], u)
        else:
            for k0 in range(unrolled):
                step([], k0)
        for k0 in range(unrolled, self.k):
            step([], k0)
        for j in range(lanes):
            with w.block(""):
                w.line(f"float v = s{j};")
                terms, offsets = rows.at(n, j)
                self.emit_epilogue(w, terms[1:], offsets[1:])
                w.line(f"{w.at(self.out, terms[0], offsets[0])} = v;")


@dataclass
class _Rows:
    """Index terms of one output row (..., m, :) for a, b, the output and the epilogue operands."""

    a: Terms
    b: Terms
    out: Terms
    operands: list[Terms]
    n_strides: list[int]      # stride along n of the output, then of each epilogue operand

    def at(self, n: str | int, j: int) -> tuple[list[Terms], list[int]]:
        """Terms and offsets of column n + j for the output and each epilogue operand."""
        rows = [self.out, *self.operands]
        if isinstance(n, str):
            return [[*t, (n, s)] for t, s in zip(rows, self.n_strides)], [j * s for s in self.n_strides]
        return rows, [(n + j) * s for s in self.n_strides]


def _as_matrix(value: Value, vector_axis: int) -> tuple[Shape, Strides]:
    """numpy.matmul's view of an operand: a vector gains a unit axis (in front for a, behind for b)."""
    shape, strides = value.shape, value.element_strides
    if len(shape) == 1:
        return ((1, *shape), (0, *strides)) if vector_axis == 0 else ((*shape, 1), (*strides, 0))
    return shape, strides


def _packed(b: Value, shape: Shape, strides: Strides, batch: Shape, scale: float) -> tuple[Value, Strides]:
    """A constant right-hand side in the order `MatMulKernel` reads it (see its docstring), times `scale`."""
    matrix = np.lib.stride_tricks.as_strided(np.ascontiguousarray(b.const, np.float32).reshape(-1), shape,
                                             [s * 4 for s in strides])
    lead = matrix.shape[:-2]
    blocks = [matrix[..., :, n:n + LANES].reshape(*lead, -1) for n in range(0, shape[-1], LANES)]
    packed = np.concatenate(blocks, axis=-1) * np.float32(scale)
    packed_strides = contiguous_strides(packed.shape)
    return (Value(b.name, packed.shape, const=packed),
            (*broadcast_strides(packed.shape[:-1], packed_strides[:-1], batch), 0, 0))


def _kernel(node: Node, a: tuple[Value, Shape, Strides], b: tuple[Value, Shape, Strides], alpha: float,
            epilogue: list[PointOp]) -> MatMulKernel:
    (a_value, a_shape, a_str), (b_value, b_shape, b_str) = a, b
    if a_shape[-1] != b_shape[-2]:
        raise node.fail(f"multiplies shapes {a_value.shape} and {b_value.shape}", "fix the model's shapes")
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    a_strides = (*broadcast_strides(a_shape[:-2], a_str[:-2], batch), *a_str[-2:])
    if b_value.is_const:
        b_value, b_strides = _packed(b_value, b_shape, b_str, batch, alpha)
    else:
        b_strides = (*broadcast_strides(b_shape[:-2], b_str[:-2], batch), *b_str[-2:])
        if alpha != 1.0:
            epilogue = [PointOp(lambda v, _: f"{flit(alpha)} * {v}"), *epilogue]
    loop_shape = (*batch, a_shape[-2], b_shape[-1])
    return MatMulKernel(node.label, a_value, a_strides, b_value, b_strides, b_value.is_const, a_shape[-1],
                        fresh(node.out_name(), node.out_shapes[0]), loop_shape, epilogue)


def lower_matmul(node: Node) -> Lowered:
    a, b = node.inputs[0], node.inputs[1]
    assert a is not None and b is not None
    kernel = _kernel(node, (a, *_as_matrix(a, 0)), (b, *_as_matrix(b, 1)), 1.0, [])
    return Lowered([kernel.out], [kernel])


def lower_gemm(node: Node) -> Lowered:
    """Y = alpha * A' B' + beta * C, with A' and B' optionally transposed (as views, never copied)."""
    a, b, c = node.inputs[0], node.input(1), node.input(2)
    assert a is not None and b is not None

    def matrix(value: Value, transposed: bool) -> tuple[Value, Shape, Strides]:
        shape, strides = value.shape, value.element_strides
        return (value, shape[::-1], strides[::-1]) if transposed else (value, shape, strides)

    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    epilogue = []
    if c is not None:
        if c.is_const:
            bias = Value(c.name, c.shape, const=np.asarray(c.const, np.float32) * np.float32(beta))
            epilogue.append(PointOp(lambda v, o: f"{v} + {o}", bias))
        elif beta == 1.0:
            epilogue.append(PointOp(lambda v, o: f"{v} + {o}", c))
        else:
            epilogue.append(PointOp(lambda v, o: f"{v} + {flit(beta)} * {o}", c))
    kernel = _kernel(node, matrix(a, bool(node.attr("transA", 0))), matrix(b, bool(node.attr("transB", 0))),
                     alpha, epilogue)
    return Lowered([kernel.out], [kernel])


OPS = {"MatMul": lower_matmul, "Gemm": lower_gemm}
