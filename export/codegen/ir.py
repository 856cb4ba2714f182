"""What an operator emitter sees (`Node`) and what it returns (`Lowered`: output tensors and kernels).

An emitter either folds its node into views of existing buffers (layout operators) or returns
kernels, each of which writes one fresh tensor and knows how to print its own C. The memory planner
only needs `reads`, `out` and `inplace_candidates`; the C printer only needs `emit`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from nanoswarm.export.codegen.cwriter import CWriter
from nanoswarm.export.codegen.model import CodegenError
from nanoswarm.export.codegen.tensors import Shape, Value


class Kernel(ABC):
    """A piece of generated code that reads tensors and writes one fresh tensor `out`."""

    label: str
    out: Value

    @abstractmethod
    def reads(self) -> list[Value]:
        """Every tensor read, once per operand (a tensor read twice counts twice)."""

    def inplace_candidates(self) -> list[Value]:
        """Operands whose buffer may be overwritten with the output when they die here (same element order)."""
        return []

    @abstractmethod
    def emit(self, w: CWriter) -> None:
        """Print the kernel's C (inside `nanoswarm_policy`)."""


@dataclass
class Lowered:
    outputs: list[Value]
    kernels: list[Kernel] = field(default_factory=list)


@dataclass
class Node:
    """One ONNX node with its inputs resolved to tensors and its output shapes inferred."""

    proto: onnx.NodeProto
    label: str
    inputs: list[Value | None]        # None for an omitted optional input
    out_shapes: list[Shape]
    opset: int
    attrs: dict[str, Any]

    @property
    def op(self) -> str:
        return self.proto.op_type

    def out_name(self, i: int = 0) -> str:
        return self.proto.output[i]

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def fail(self, problem: str, fix: str) -> CodegenError:
        return CodegenError(f"{self.label}: {problem}; {fix}")

    def constant(self, i: int, what: str) -> np.ndarray | None:
        """Input `i` as a generation-time constant (None when omitted); a computed one is refused."""
        value = self.input(i)
        if value is None:
            return None
        if not value.is_const:
            raise self.fail(f"its {what} (input {i}, '{value.name}') is computed from the observation",
                            "the C generator needs it constant: compute it from fixed sizes or weights only")
        return value.const

    def ints(self, i: int, attr: str) -> Sequence[int] | None:
        """An integer list that old opsets give as attribute `attr` and new ones as constant input `i`
        (Reduce* axes, Slice starts/ends/axes); None when absent."""
        if attr in self.attrs:
            return [int(a) for a in self.attrs[attr]]
        values = self.constant(i, attr)
        return None if values is None else [int(a) for a in values.reshape(-1)]


def inplace_safe(value: Value, out: Value, reads: list[Value]) -> bool:
    """Whether a kernel writing `out` element by element may overwrite `value`'s buffer: `value` is read in
    the output's element order (same shape, the whole buffer, row-major) and no other operand reads that
    buffer through another view. Whether the buffer is still needed afterwards is the planner's question."""
    if value.is_const or value.shape != out.shape or not value.covers_buffer():
        return False
    root = value.buffer.root()
    return all(other is value or other.is_const or other.buffer.root() is not root for other in reads)


def normalize_axis(axis: int, rank: int, node: Node) -> int:
    if not -rank <= axis < rank:
        raise node.fail(f"axis {axis} is out of range for rank {rank}", "fix the model's axis attribute")
    return axis % rank
