"""Elementwise operators: one C expression each, applied to a running value `v`.

Each operator becomes a `PointOp`, a step `v = f(v, operand)`. A standalone elementwise node is a
loop that loads `v` from its first input and applies its step; the planner later appends the steps
of following elementwise nodes to the same loop (or to a matrix product's loop, see `Fusable`), so
`(x - mean) * scale` then clip, or bias then tanh, cost one pass and no intermediate buffer.
Operands broadcast with numpy rules through zero strides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto

from nanoswarm.export.codegen.cwriter import CWriter, Terms, flit, loops
from nanoswarm.export.codegen.ir import Kernel, Lowered, Node, inplace_safe
from nanoswarm.export.codegen.tensors import Shape, Value, broadcast_strides, contiguous_strides, fresh

Expr = Callable[[str, str], str]     # (running value, operand element) -> C expression


@dataclass
class PointOp:
    """One elementwise step `v = expr(v, operand)`; `operand` is None for unary steps."""

    expr: Expr
    operand: Value | None = None
    helpers: tuple[str, ...] = ()


class Fusable(Kernel):
    """A kernel that holds each output element in a local `v` before storing it.

    Elementwise steps that follow it (`epilogue`) run on `v` inside the same loop, so a bias, a scale
    and an activation after a matrix product cost no pass over memory of their own.
    """

    loop_shape: Shape
    epilogue: list[PointOp]

    def epilogue_operands(self) -> list[Value]:
        return [op.operand for op in self.epilogue if op.operand is not None]

    def epilogue_strides(self) -> list[tuple[int, ...]]:
        return [broadcast_strides(v.shape, v.element_strides, self.loop_shape) for v in self.epilogue_operands()]

    def emit_epilogue(self, w: CWriter, operand_terms: list[Terms], offsets: list[int] | None = None) -> None:
        """`v = ...;` for every step; `operand_terms` (and `offsets`) index each step's operand, in order."""
        places = iter(zip(operand_terms, offsets or [0] * len(operand_terms)))
        for op in self.epilogue:
            for helper in op.helpers:
                w.need(helper)
            operand = w.at(op.operand, *next(places)) if op.operand is not None else ""
            w.line(f"v = {op.expr('v', operand)};")


@dataclass(eq=False)
class ElementwiseKernel(Fusable):
    label: str
    src: Value
    out: Value
    epilogue: list[PointOp] = field(default_factory=list)

    @property
    def loop_shape(self) -> Shape:   # type: ignore[override]
        return self.out.shape

    def reads(self) -> list[Value]:
        return [self.src, *self.epilogue_operands()]

    def inplace_candidates(self) -> list[Value]:
        reads = self.reads()
        return [v for v in reads if inplace_safe(v, self.out, reads)]

    def emit(self, w: CWriter) -> None:
        src_strides = broadcast_strides(self.src.shape, self.src.element_strides, self.loop_shape)
        strides = [src_strides, contiguous_strides(self.loop_shape), *self.epilogue_strides()]
        with loops(w, self.loop_shape, strides) as (src, out, *operands):
            w.line(f"float v = {w.at(self.src, src)};")
            self.emit_epilogue(w, operands)
            w.line(f"{w.at(self.out, out)} = v;")


# --- the operators ---------------------------------------------------------------------------------------

def _relu(node: Node) -> PointOp:
    return PointOp(lambda v, _: f"{v} > 0.0f ? {v} : 0.0f")


def _leaky_relu(node: Node) -> PointOp:
    alpha = flit(node.attr("alpha", 0.01))
    return PointOp(lambda v, _: f"{v} >= 0.0f ? {v} : {alpha} * {v}")


def _elu(node: Node) -> PointOp:
    alpha = float(node.attr("alpha", 1.0))
    scale = "" if alpha == 1.0 else f"{flit(alpha)} * "
    return PointOp(lambda v, _: f"{v} > 0.0f ? {v} : {scale}(ns_expf({v}) - 1.0f)", helpers=("ns_expf",))


def _tanh(node: Node) -> PointOp:
    return PointOp(lambda v, _: f"ns_tanhf({v})", helpers=("ns_tanhf",))


def _sigmoid(node: Node) -> PointOp:
    return PointOp(lambda v, _: f"ns_sigmoidf({v})", helpers=("ns_sigmoidf",))


def _sqrt(node: Node) -> PointOp:
    return PointOp(lambda v, _: f"sqrtf({v})")


def _abs(node: Node) -> PointOp:
    return PointOp(lambda v, _: f"fabsf({v})")


def _neg(node: Node) -> PointOp:
    return PointOp(lambda v, _: f"-{v}")


def _clip(node: Node) -> PointOp:
    """Bounds are attributes before opset 11 and optional constant inputs after."""
    if node.opset < 11:
        lo, hi = node.attr("min"), node.attr("max")
    else:
        lo, hi = node.constant(1, "min"), node.constant(2, "max")
    lo_s = None if lo is None else flit(np.asarray(lo).reshape(-1)[0])
    hi_s = None if hi is None else flit(np.asarray(hi).reshape(-1)[0])

    def expr(v: str, _: str) -> str:
        upper = v if hi_s is None else f"({v} > {hi_s} ? {hi_s} : {v})"
        return upper if lo_s is None else f"{v} < {lo_s} ? {lo_s} : {upper}"

    return PointOp(expr)


UNARY: dict[str, Callable[[Node], PointOp]] = {
    "Relu": _relu, "LeakyRelu": _leaky_relu, "Elu": _elu, "Tanh": _tanh, "Sigmoid": _sigmoid,
    "Sqrt": _sqrt, "Abs": _abs, "Neg": _neg, "Clip": _clip,
}

BINARY: dict[str, str] = {"Add": "{a} + {b}", "Sub": "{a} - {b}", "Mul": "{a} * {b}", "Div": "{a} / {b}",
                          "Pow": "powf({a}, {b})"}

# x ** c for constants c with a cheaper exact spelling than powf
POWERS: dict[float, str] = {1.0: "{v}", 2.0: "{v} * {v}", 3.0: "{v} * {v} * {v}", 0.5: "sqrtf({v})",
                            -1.0: "1.0f / {v}"}


def _binary(node: Node, src_index: int) -> PointOp:
    """The step for `v = a op b` where `v` is input `src_index` and the operand the other input."""
    operand = node.inputs[1 - src_index]
    assert operand is not None
    scalar = float(operand.const.reshape(-1)[0]) if operand.is_const and operand.size == 1 else None
    if src_index == 0 and scalar is not None:
        if node.op == "Pow" and scalar in POWERS:
            form = POWERS[scalar]
            return PointOp(lambda v, _: form.format(v=v))
        if node.op == "Div":    # multiply by the reciprocal: a division costs 14 cycles on the M4
            reciprocal = Value(operand.name, (), const=np.float32(1.0) / np.asarray(scalar, np.float32))
            return PointOp(lambda v, o: f"{v} * {o}", reciprocal)
    form = BINARY[node.op]
    if src_index == 0:
        return PointOp(lambda v, o: form.format(a=v, b=o), operand)
    return PointOp(lambda v, o: form.format(a=o, b=v), operand)


def _source_index(a: Value | None, b: Value | None, out_shape: Shape) -> int:
    """Which input of a binary node to load as `v`: a computed one, preferably of the output's shape,
    so that the planner can write in place and fusion can continue the chain it belongs to."""
    assert a is not None and b is not None
    if a.is_const:
        return 1
    if b.is_const:
        return 0
    return 1 if a.shape != out_shape and b.shape == out_shape else 0


def lower_elementwise(node: Node) -> Lowered:
    out_shape = node.out_shapes[0]
    if node.op in UNARY:
        src, step = node.inputs[0], UNARY[node.op](node)
    else:
        src_index = _source_index(node.inputs[0], node.inputs[1], out_shape)
        src, step = node.inputs[src_index], _binary(node, src_index)
    assert src is not None and not src.is_const
    kernel = ElementwiseKernel(node.label, src, fresh(node.out_name(), out_shape), [step])
    return Lowered([kernel.out], [kernel])


def lower_cast(node: Node) -> Lowered:
    """Cast of computed values: only to float (a no-op on the float tensors the C code holds)."""
    if node.attr("to") != TensorProto.FLOAT:
        raise node.fail(f"casts a computed tensor to {TensorProto.DataType.Name(node.attr('to'))}",
                        "the generated C computes in float32 only: remove the cast from the exported module")
    src = node.inputs[0]
    assert src is not None
    return Lowered([src.view(node.out_name(), src.shape, src.strides)])


OPS = {**{op: lower_elementwise for op in (*UNARY, *BINARY)}, "Cast": lower_cast}
