"""Writing the C: indented lines, float literals, weight arrays, index expressions and loop nests.

Every kernel emits through one `CWriter`, so the spelling of the generated code (single-precision
literals, literal loop bounds, how a tensor element is addressed) is decided here once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from nanoswarm.export.codegen.tensors import Shape, Strides, Value

Terms = list[tuple[str, int]]     # (loop variable, stride) pairs of an index expression

VALUES_PER_LINE = 8


def flit(x: float) -> str:
    """A single-precision C literal that reads back as exactly this float32 (shortest round-trip form)."""
    x = np.float32(x)
    if np.isnan(x):
        return "NAN"
    if np.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    text = str(x)
    return text + ("f" if ("." in text or "e" in text) else ".0f")


def index(offset: int, terms: Terms) -> str:
    """`offset + i0 * s0 + ...` with zero strides dropped and unit strides unwritten."""
    parts = [str(offset)] if offset or not any(s for _, s in terms) else []
    for var, stride in terms:
        if stride == 0:
            continue
        term = var if abs(stride) == 1 else f"{var} * {abs(stride)}"
        if not parts:
            parts.append(term if stride > 0 else f"-{term}")
        else:
            parts.append(("+ " if stride > 0 else "- ") + term)
    return " ".join(parts)


class CWriter:
    """The body of `nanoswarm_policy` and the constant arrays and helpers it needs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1
        self.arrays: dict[bytes, tuple[str, str, np.ndarray]] = {}
        self.helpers: set[str] = set()
        self._counter = 0

    # --- statements -------------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        self.line(f"{header} {{" if header else "{")
        self.depth += 1
        yield
        self.depth -= 1
        self.line("}")

    def fresh(self, prefix: str) -> str:
        """A variable name unique within the current kernel."""
        self._counter += 1
        return f"{prefix}{self._counter}"

    @contextmanager
    def kernel(self, comment: str) -> Iterator[None]:
        """One kernel's code in its own scope, headed by the node it implements."""
        self._counter = -1
        self.line(f"/* {comment} */")
        with self.block(""):
            yield

    def need(self, helper: str) -> str:
        """Record that the code calls a fast-math helper; returns its name."""
        self.helpers.add(helper)
        return helper

    # --- data ---------------------------------------------------------------------------------------------
    def array(self, values: np.ndarray, what: str) -> str:
        """Name of a `static const float` array with these values (identical arrays are emitted once)."""
        flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        key = flat.tobytes()
        if key not in self.arrays:
            self.arrays[key] = (f"w{len(self.arrays)}", what, flat)
        return self.arrays[key][0]

    def at(self, value: Value, terms: Terms, offset: int = 0) -> str:
        """The C expression of one element of `value`: a literal for a scalar constant, else an array element."""
        if value.is_const and value.size == 1:
            return flit(value.const.reshape(-1)[0])
        return self._element(value, terms, offset)

    def pointer(self, value: Value, terms: Terms, offset: int = 0) -> str:
        """A pointer to one element of `value`, for kernels that index a row relative to it."""
        return f"&{self._element(value, terms, offset)}"

    def _element(self, value: Value, terms: Terms, offset: int) -> str:
        if value.is_const:
            return f"{self.array(value.const, value.name)}[{index(offset, terms)}]"
        root = value.buffer.root()
        base = root.offset if root.kind == "scratch" else 0
        return f"{root.kind}[{index(base + value.offset + offset, terms)}]"

    @property
    def param_count(self) -> int:
        return sum(flat.size for _, _, flat in self.arrays.values())

    def array_definitions(self) -> list[str]:
        out = []
        for name, what, flat in self.arrays.values():
            out.append(f"/* {what}: {flat.size} */")
            out.append(f"static const float {name}[{flat.size}] = {{")
            for start in range(0, flat.size, VALUES_PER_LINE):
                out.append("    " + ", ".join(flit(v) for v in flat[start:start + VALUES_PER_LINE]) + ",")
            out.append("};")
        return out


def merge_dims(shape: Shape, strides: Sequence[Strides]) -> list[tuple[int, list[int]]]:
    """Fewest loops that visit `shape` for every operand: drops unit axes, fuses axes all operands step alike."""
    dims = [(n, [s[axis] for s in strides]) for axis, n in enumerate(shape) if n != 1]
    merged: list[tuple[int, list[int]]] = []
    for n, ss in dims:
        if merged and all(outer == inner * n for outer, inner in zip(merged[-1][1], ss)):
            merged[-1] = (merged[-1][0] * n, ss)
        else:
            merged.append((n, ss))
    return merged


@contextmanager
def loops(w: CWriter, shape: Shape, strides: Sequence[Strides]) -> Iterator[list[Terms]]:
    """Open nested `for` loops over `shape`; yields, per operand, the terms of its index expression."""
    terms: list[Terms] = [[] for _ in strides]
    dims = merge_dims(shape, strides)
    for n, ss in dims:
        var = w.fresh("i")
        w.line(f"for (int {var} = 0; {var} < {n}; ++{var}) {{")
        w.depth += 1
        for t, s in zip(terms, ss):
            t.append((var, s))
    yield terms
    for _ in dims:
        w.depth -= 1
        w.line("}")
