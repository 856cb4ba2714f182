"""Fusion and memory planning: fewer passes over memory, and one small static scratch array.

`fuse` appends an elementwise kernel to the kernel producing its input when nothing else reads that
input, so the intermediate is never stored. `plan_memory` then lets a kernel write over an input that
dies there (in place), binds the graph's output to the caller's `output` array, and places every other
buffer in the scratch array by the greedy-by-size rule (largest first, at the lowest offset free
during its lifetime), so intermediates that never live at the same time share memory.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from nanoswarm.export.codegen.ir import Kernel
from nanoswarm.export.codegen.ops.elementwise import ElementwiseKernel, Fusable
from nanoswarm.export.codegen.ops.layout import copy_of
from nanoswarm.export.codegen.tensors import Buffer, Value


def fuse(kernels: list[Kernel], output: Value) -> list[Kernel]:
    reads = Counter(v.buffer for k in kernels for v in k.reads() if not v.is_const)
    fused: list[Kernel] = []
    producer: dict[Buffer, int] = {}      # buffer -> index in `fused` of the kernel writing it

    def ready_before(value: Value, position: int) -> bool:
        return value.is_const or value.buffer.kind == "input" or producer[value.buffer] < position

    for kernel in kernels:
        if isinstance(kernel, ElementwiseKernel) and kernel.src.buffer in producer:
            position = producer[kernel.src.buffer]
            target = fused[position]
            if (isinstance(target, Fusable) and kernel.src is target.out and reads[target.out.buffer] == 1
                    and target.out.buffer is not output.buffer
                    and kernel.out.shape == target.out.shape == target.loop_shape
                    and all(ready_before(v, position) for v in kernel.epilogue_operands())):
                target.epilogue.extend(kernel.epilogue)
                target.out = kernel.out
                target.label += f" + {kernel.label}"
                producer[kernel.out.buffer] = position
                continue
        producer[kernel.out.buffer] = len(fused)
        fused.append(kernel)
    return fused


def plan_memory(kernels: list[Kernel], output: Value) -> tuple[list[Kernel], int]:
    """Decide where every buffer lives; returns the kernels (plus a final copy if one is needed) and the
    scratch size in floats."""
    _write_in_place(kernels, output)
    kernels = _bind_output(kernels, output)
    first: dict[Buffer, int] = {}
    last: dict[Buffer, int] = {}
    for i, kernel in enumerate(kernels):
        first.setdefault(kernel.out.buffer.root(), i)
        for value in kernel.reads():
            if not value.is_const:
                last[value.buffer.root()] = i
    scratch = [b for b in first if b.kind == "scratch"]
    placed: list[Buffer] = []
    for buffer in sorted(scratch, key=lambda b: (-b.size, first[b])):
        span = (first[buffer], last.get(buffer, first[buffer]))
        taken = sorted((p.offset, p.offset + p.size) for p in placed
                       if first[p] <= span[1] and span[0] <= last.get(p, first[p]))
        offset = 0
        for lo, hi in taken:
            if offset + buffer.size <= lo:
                break
            offset = max(offset, hi)
        buffer.offset = offset
        placed.append(buffer)
    return kernels, max((b.offset + b.size for b in placed), default=0)


def _write_in_place(kernels: list[Kernel], output: Value) -> None:
    """Alias a kernel's output buffer to an input buffer that nothing reads afterwards."""
    last: dict[Buffer, int] = {}
    for i, kernel in enumerate(kernels):
        for value in kernel.reads():
            if not value.is_const:
                last[value.buffer] = i
    if not output.is_const:
        last[output.buffer] = len(kernels)          # the caller reads it after the last kernel
    members: dict[Buffer, list[Buffer]] = defaultdict(list)
    for i, kernel in enumerate(kernels):
        for candidate in kernel.inplace_candidates():
            root = candidate.buffer.root()
            group = members[root] or [root]
            if root.kind == "scratch" and max(last.get(b, -1) for b in group) == i:
                kernel.out.buffer.alias = root
                members[root] = [*group, kernel.out.buffer]
                break


def _bind_output(kernels: list[Kernel], output: Value) -> list[Kernel]:
    """Let the buffer holding the result be the caller's `output` array, or copy the result there."""
    if not output.is_const and output.buffer.root().kind == "scratch" and output.covers_buffer():
        output.buffer.root().kind = "output"
        return kernels
    copy = copy_of("copy to the output", output.name, output)
    copy.out.buffer.kind = "output"
    return [*kernels, copy]
