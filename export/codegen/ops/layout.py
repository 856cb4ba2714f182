"""Layout operators: new views of existing buffers, and the copies when a view cannot express them.

Reshape, Flatten, Squeeze, Unsqueeze and Identity relabel a tensor; Transpose, Slice (any step,
negative ones too), Expand (stride 0) and Gather with evenly spaced indices pick elements at regular
strides. All of them cost no code and no memory. Concat, Tile, Gather with irregular indices and a reshape of a
non-contiguous view copy, with one `CopyKernel` that moves rectangular pieces. Shape becomes a constant, since all
shapes are fixed at generation time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanoswarm.export.codegen.cwriter import CWriter, loops
from nanoswarm.export.codegen.ir import Kernel, Lowered, Node, normalize_axis
from nanoswarm.export.codegen.tensors import Strides, Value, broadcast_strides, contiguous_strides, fresh


@dataclass(eq=False)
class Piece:
    """Copy all of `src` into the output at `offset`, stepping through the output with `strides`."""

    src: Value
    offset: int
    strides: Strides


@dataclass(eq=False)
class CopyKernel(Kernel):
    label: str
    out: Value
    pieces: list[Piece]

    def reads(self) -> list[Value]:
        return [p.src for p in self.pieces]

    def emit(self, w: CWriter) -> None:
        for piece in self.pieces:
            with loops(w, piece.src.shape, [piece.src.element_strides, piece.strides]) as (src, dst):
                w.line(f"{w.at(self.out, dst, piece.offset)} = {w.at(piece.src, src)};")


def copy_of(label: str, name: str, src: Value) -> CopyKernel:
    """A contiguous copy of `src` (for reshaping a strided view, or delivering the graph's output)."""
    out = fresh(name, src.shape)
    return CopyKernel(label, out, [Piece(src, 0, out.strides)])


def lower_reshape(node: Node) -> Lowered:
    """Reshape, Flatten, Squeeze, Unsqueeze, Identity: the inferred output shape says it all."""
    src = node.inputs[0]
    assert src is not None
    shape = node.out_shapes[0]
    view = src.reshaped(node.out_name(), shape)
    if view is not None:
        return Lowered([view])
    copy = copy_of(node.label, node.out_name(), src)
    reshaped = copy.out.reshaped(node.out_name(), shape)
    assert reshaped is not None
    return Lowered([reshaped], [copy])


def lower_transpose(node: Node) -> Lowered:
    src = node.inputs[0]
    assert src is not None
    perm = node.attr("perm") or list(reversed(range(len(src.shape))))
    return Lowered([src.view(node.out_name(), tuple(src.shape[p] for p in perm),
                             tuple(src.strides[p] for p in perm))])


def lower_expand(node: Node) -> Lowered:
    """Broadcasting to a larger shape repeats elements: stride 0 along the new or widened axes."""
    src = node.inputs[0]
    assert src is not None
    shape = node.out_shapes[0]
    return Lowered([src.view(node.out_name(), shape, broadcast_strides(src.shape, src.strides, shape))])


def lower_tile(node: Node) -> Lowered:
    """Tile copies a view that splits every axis into (repeats, size) with stride 0 over the repeats."""
    src = node.inputs[0]
    assert src is not None
    repeats = node.constant(1, "repeats")
    assert repeats is not None
    shape = tuple(x for r, n in zip(repeats.tolist(), src.shape) for x in (int(r), n))
    strides = tuple(x for s in src.strides for x in (0, s))
    copy = copy_of(node.label, node.out_name(), src.view(f"{src.name}_tiled", shape, strides))
    tiled = copy.out.reshaped(node.out_name(), node.out_shapes[0])
    assert tiled is not None
    return Lowered([tiled], [copy])


def lower_slice(node: Node) -> Lowered:
    """Starts/ends/axes are attributes before opset 10 and constant inputs (with steps) after."""
    src = node.inputs[0]
    assert src is not None
    rank = len(src.shape)
    starts, ends = node.ints(1, "starts"), node.ints(2, "ends")
    assert starts is not None and ends is not None
    axes = node.ints(3, "axes") or list(range(len(starts)))
    steps = (None if node.opset < 10 else node.ints(4, "steps")) or [1] * len(starts)
    shape, strides, offset = list(src.shape), list(src.strides), 0
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = normalize_axis(axis, rank, node)
        if step == 0:
            raise node.fail("has a step of 0", "use a non-zero step")
        picked = range(*slice(start, end, step).indices(src.shape[axis]))
        offset += picked.start * src.strides[axis]
        shape[axis], strides[axis] = len(picked), step * src.strides[axis]
    return Lowered([src.view(node.out_name(), tuple(shape), tuple(strides), offset)])


def lower_gather(node: Node) -> Lowered:
    """Constant indices only; a view when they are evenly spaced, else one piece per index."""
    data = node.inputs[0]
    assert data is not None
    indices = node.constant(1, "indices")
    assert indices is not None
    axis = normalize_axis(int(node.attr("axis", 0)), len(data.shape), node)
    size = data.shape[axis]
    flat = indices.astype(np.int64).reshape(-1)
    if np.any((flat < -size) | (flat >= size)):
        raise node.fail(f"has indices outside [-{size}, {size})", "fix the indices")
    flat = np.where(flat < 0, flat + size, flat)
    out_shape = node.out_shapes[0]
    pre, post = data.shape[:axis], data.shape[axis + 1:]
    steps = np.diff(flat)
    if steps.size == 0 or np.all(steps == steps[0]):
        step = int(steps[0]) if steps.size else 0
        idx_strides = tuple(s * step * data.strides[axis] for s in contiguous_strides(indices.shape))
        strides = (*data.strides[:axis], *idx_strides, *data.strides[axis + 1:])
        return Lowered([data.view(node.out_name(), out_shape, strides, int(flat[0]) * data.strides[axis])])
    out = fresh(node.out_name(), out_shape)
    block = int(np.prod(post, dtype=np.int64))
    dst = (*out.strides[:axis], *out.strides[axis + indices.ndim:])
    pieces = [Piece(data.view(f"{data.name}[{i}]", (*pre, *post), (*data.strides[:axis], *data.strides[axis + 1:]),
                              int(i) * data.strides[axis]), j * block, dst)
              for j, i in enumerate(flat)]
    return Lowered([out], [CopyKernel(node.label, out, pieces)])


def lower_concat(node: Node) -> Lowered:
    out = fresh(node.out_name(), node.out_shapes[0])
    axis = normalize_axis(int(node.attr("axis")), len(out.shape), node)
    pieces, position = [], 0
    for value in node.inputs:
        assert value is not None
        if value.size:
            pieces.append(Piece(value, position * out.strides[axis], out.strides))
        position += value.shape[axis]
    return Lowered([out], [CopyKernel(node.label, out, pieces)])


def lower_shape(node: Node) -> Lowered:
    src = node.inputs[0]
    assert src is not None
    rank = len(src.shape)
    start, end = int(node.attr("start", 0)), node.attr("end")
    dims = src.shape[slice(start, None if end is None else int(end))] if rank else ()
    return Lowered([Value(node.out_name(), (len(dims),), const=np.array(dims, dtype=np.int64))])


OPS = {**{op: lower_reshape for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")},
       "Transpose": lower_transpose, "Expand": lower_expand, "Tile": lower_tile, "Slice": lower_slice, "Gather": lower_gather, "Concat": lower_concat,
       "Shape": lower_shape}
