"""The op table: ONNX operator type -> emitter. An operator missing here is refused by name."""

from __future__ import annotations

from collections.abc import Callable

from nanoswarm.export.codegen.ir import Lowered, Node
from nanoswarm.export.codegen.ops import elementwise, layout, linalg, reduce

OPS: dict[str, Callable[[Node], Lowered]] = {**elementwise.OPS, **linalg.OPS, **layout.OPS, **reduce.OPS}
