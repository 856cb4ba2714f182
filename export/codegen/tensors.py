"""Tensors as the generator sees them: constants, or strided views into a float buffer.

A dynamic tensor is (buffer, offset, shape, strides), all known at generation time. Layout-only
operators (Reshape, Transpose, Slice, Squeeze, ...) make new views of the same buffer and cost no
code; kernels read any view through its strides and write fresh contiguous buffers. Buffers are
placed later by the memory planner, which is the only code that looks at their lifetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Shape = tuple[int, ...]
Strides = tuple[int, ...]


def contiguous_strides(shape: Shape) -> Strides:
    """Row-major strides, in elements."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def broadcast_strides(shape: Shape, strides: Strides, out_shape: Shape) -> Strides:
    """Strides that read a tensor broadcast (numpy rules) to `out_shape`: 0 along repeated axes."""
    pad = len(out_shape) - len(shape)
    out = [0] * pad
    for n, s, target in zip(shape, strides, out_shape[pad:]):
        out.append(0 if n == 1 and target != 1 else s)
    return tuple(out)


@dataclass(eq=False)
class Buffer:
    """A float array the C function reads or writes: the caller's input or output, or a scratch region.

    `alias` is set when the planner lets a kernel write over an input buffer that dies there (in-place);
    every question about placement goes to `root()`.
    """

    size: int
    kind: str = "scratch"                 # 'input' | 'output' | 'scratch'
    offset: int = 0                       # start in the scratch array, set by the planner
    alias: Buffer | None = None

    def root(self) -> Buffer:
        buffer = self
        while buffer.alias is not None:
            buffer = buffer.alias
        return buffer


@dataclass(eq=False)
class Value:
    """One ONNX tensor: a constant (`const`) or a view into a buffer."""

    name: str
    shape: Shape
    const: np.ndarray | None = None
    buffer: Buffer | None = None
    offset: int = 0
    strides: Strides = field(default=())

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def element_strides(self) -> Strides:
        """Strides for reading: a constant is emitted as a contiguous array."""
        return contiguous_strides(self.shape) if self.is_const else self.strides

    def is_contiguous(self) -> bool:
        """Row-major without gaps (axes of size 1 may have any stride)."""
        expected = contiguous_strides(self.shape)
        return all(n == 1 or s == e for n, s, e in zip(self.shape, self.strides, expected))

    def covers_buffer(self) -> bool:
        """The whole of its buffer, in row-major order: a kernel may then reuse the buffer for its output."""
        assert self.buffer is not None
        return self.offset == 0 and self.size == self.buffer.size and self.is_contiguous()

    def view(self, name: str, shape: Shape, strides: Strides, offset: int = 0) -> Value:
        """Another tensor over the same buffer (`offset` relative to this one)."""
        assert self.buffer is not None, "constants are folded, never viewed"
        return Value(name, tuple(shape), buffer=self.buffer, offset=self.offset + offset, strides=tuple(strides))

    def reshaped(self, name: str, shape: Shape) -> Value | None:
        """A view with another shape of the same elements, or None when that needs a copy.

        Contiguous tensors reshape freely; others only when the change adds or drops axes of size 1.
        """
        shape = tuple(shape)
        if self.is_contiguous():
            return self.view(name, shape, contiguous_strides(shape))
        kept = [(n, s) for n, s in zip(self.shape, self.strides) if n != 1]
        if [n for n, _ in kept] != [n for n in shape if n != 1]:
            return None
        it = iter(kept)
        return self.view(name, shape, tuple(0 if n == 1 else next(it)[1] for n in shape))


def fresh(name: str, shape: Shape) -> Value:
    """A kernel's output: a new contiguous buffer of its own."""
    shape = tuple(int(n) for n in shape)
    size = int(np.prod(shape, dtype=np.int64))
    return Value(name, shape, buffer=Buffer(size), strides=contiguous_strides(shape))
