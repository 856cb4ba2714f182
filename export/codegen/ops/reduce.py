"""Operators that reduce over axes: ReduceSum, ReduceMean, Softmax and LayerNormalization.

All four loop over the kept axes outside and the reduced axes inside, reading the input through its
strides; Softmax and LayerNormalization then write every element of the reduced group, which they may
do over their own input (the planner decides), since each element is read before it is overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nanoswarm.export.codegen.cwriter import CWriter, flit, loops
from nanoswarm.export.codegen.ir import Kernel, Lowered, Node, inplace_safe, normalize_axis
from nanoswarm.export.codegen.tensors import Shape, Strides, Value, broadcast_strides, contiguous_strides, fresh


@dataclass(frozen=True)
class Axes:
    """The kept (outer) and reduced (inner) axes of a shape, and the strides of any operand over each."""

    shape: Shape
    reduced: tuple[int, ...]

    @property
    def outer(self) -> Shape:
        return tuple(n for d, n in enumerate(self.shape) if d not in self.reduced)

    @property
    def inner(self) -> Shape:
        return tuple(self.shape[d] for d in self.reduced)

    @property
    def count(self) -> int:
        return int(np.prod(self.inner, dtype=np.int64))

    def split(self, strides: Strides) -> tuple[Strides, Strides]:
        return (tuple(s for d, s in enumerate(strides) if d not in self.reduced),
                tuple(strides[d] for d in self.reduced))


@dataclass(eq=False)
class ReduceKernel(Kernel):
    label: str
    x: Value
    out: Value
    axes: Axes
    mean: bool

    def reads(self) -> list[Value]:
        return [self.x]

    def emit(self, w: CWriter) -> None:
        x_outer, x_inner = self.axes.split(self.x.strides)
        with loops(w, self.axes.outer, [x_outer, contiguous_strides(self.axes.outer)]) as (xo, yo):
            w.line("float s = 0.0f;")
            with loops(w, self.axes.inner, [x_inner]) as (xi,):
                w.line(f"s += {w.at(self.x, xo + xi)};")
            scale = f" * {flit(1.0 / self.axes.count)}" if self.mean else ""
            w.line(f"{w.at(self.out, yo)} = s{scale};")


@dataclass(eq=False)
class SoftmaxKernel(Kernel):
    label: str
    x: Value
    out: Value
    axes: Axes

    def reads(self) -> list[Value]:
        return [self.x]

    def inplace_candidates(self) -> list[Value]:
        return [self.x] if inplace_safe(self.x, self.out, self.reads()) else []

    def emit(self, w: CWriter) -> None:
        x_outer, x_inner = self.axes.split(self.x.strides)
        y_outer, y_inner = self.axes.split(contiguous_strides(self.axes.shape))
        exp = w.need("ns_expf")
        with loops(w, self.axes.outer, [x_outer, y_outer]) as (xo, yo):
            w.line("float m = -INFINITY;")
            with loops(w, self.axes.inner, [x_inner]) as (xi,):
                w.line(f"float t = {w.at(self.x, xo + xi)};")
                w.line("m = t > m ? t : m;")
            w.line("float s = 0.0f;")
            with loops(w, self.axes.inner, [x_inner, y_inner]) as (xi, yi):
                w.line(f"float e = {exp}({w.at(self.x, xo + xi)} - m);")
                w.line(f"{w.at(self.out, yo + yi)} = e;")
                w.line("s += e;")
            w.line("float r = 1.0f / s;")
            with loops(w, self.axes.inner, [y_inner]) as (yi,):
                w.line(f"{w.at(self.out, yo + yi)} *= r;")


@dataclass(eq=False)
class LayerNormKernel(Kernel):
    label: str
    x: Value
    scale: Value
    bias: Value | None
    out: Value
    axes: Axes
    epsilon: float

    def reads(self) -> list[Value]:
        return [self.x, self.scale, *([self.bias] if self.bias is not None else [])]

    def inplace_candidates(self) -> list[Value]:
        return [self.x] if inplace_safe(self.x, self.out, self.reads()) else []

    def emit(self, w: CWriter) -> None:
        affine = [v for v in (self.scale, self.bias) if v is not None]
        split = [self.axes.split(s) for s in (self.x.strides, contiguous_strides(self.axes.shape),
                                             *(broadcast_strides(v.shape, v.element_strides, self.axes.shape)
                                               for v in affine))]
        outer, inner = [o for o, _ in split], [i for _, i in split]
        reciprocal = flit(1.0 / self.axes.count)
        with loops(w, self.axes.outer, outer) as (xo, yo, *ao):
            w.line("float mean = 0.0f;")
            with loops(w, self.axes.inner, inner[:1]) as (xi,):
                w.line(f"mean += {w.at(self.x, xo + xi)};")
            w.line(f"mean *= {reciprocal};")
            w.line("float var = 0.0f;")
            with loops(w, self.axes.inner, inner[:1]) as (xi,):
                w.line(f"float d = {w.at(self.x, xo + xi)} - mean;")
                w.line("var += d * d;")
            w.line(f"float inv = 1.0f / sqrtf(var * {reciprocal} + {flit(self.epsilon)});")
            with loops(w, self.axes.inner, inner) as (xi, yi, *ai):
                terms = [w.at(v, o + i) for v, o, i in zip(affine, ao, ai)]
                shift = f" + {terms[1]}" if self.bias is not None else ""
                w.line(f"{w.at(self.out, yo + yi)} = ({w.at(self.x, xo + xi)} - mean) * inv * {terms[0]}{shift};")


def _axes(node: Node, shape: Shape, axes: Sequence[int]) -> Axes:
    return Axes(shape, tuple(sorted({normalize_axis(a, len(shape), node) for a in axes})))


def lower_reduce(node: Node) -> Lowered:
    """ReduceSum/ReduceMean: axes are an attribute before opset 13 (Sum) / 18 (Mean), an input after."""
    x = node.inputs[0]
    assert x is not None
    axes = node.ints(1, "axes")
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return Lowered([x.view(node.out_name(), x.shape, x.strides)])
        axes = list(range(len(x.shape)))
    kernel = ReduceKernel(node.label, x, fresh(node.out_name(), node.out_shapes[0]), _axes(node, x.shape, axes),
                          mean=node.op == "ReduceMean")
    return Lowered([kernel.out], [kernel])


def lower_softmax(node: Node) -> Lowered:
    """Before opset 13 Softmax normalises over all axes from `axis` on (default 1); since, over `axis` (-1)."""
    x = node.inputs[0]
    assert x is not None
    rank = len(x.shape)
    if node.opset < 13:
        axis = normalize_axis(int(node.attr("axis", 1)), rank, node)
        axes = list(range(axis, rank))
    else:
        axes = [int(node.attr("axis", -1))]
    kernel = SoftmaxKernel(node.label, x, fresh(node.out_name(), x.shape), _axes(node, x.shape, axes))
    return Lowered([kernel.out], [kernel])


def lower_layer_norm(node: Node) -> Lowered:
    x, scale, bias = node.inputs[0], node.input(1), node.input(2)
    assert x is not None and scale is not None
    axis = normalize_axis(int(node.attr("axis", -1)), len(x.shape), node)
    kernel = LayerNormKernel(node.label, x, scale, bias, fresh(node.out_name(), x.shape),
                             _axes(node, x.shape, range(axis, len(x.shape))), float(node.attr("epsilon", 1e-5)))
    return Lowered([kernel.out], [kernel])


OPS = {"ReduceSum": lower_reduce, "ReduceMean": lower_reduce, "Softmax": lower_softmax,
       "LayerNormalization": lower_layer_norm}
