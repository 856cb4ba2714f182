"""Reading an ONNX model for code generation: what the generated C function can and cannot be.

The C entry point takes one flat float32 vector and writes one flat float32 vector for a single
observation, so a model must have exactly one float input and one output, and every axis but the
leading (batch) one must have a fixed size. This module checks that up front, with messages that say
how to re-export, and fixes the batch axis to 1; everything after it can then assume static shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.inliner
from onnx import TensorProto

from nanoswarm.export.errors import CodegenError
from nanoswarm.sim.observation import ObservationLayout

LAYOUT_KEY = "nanoswarm.observation_layout"
SHA_KEY = "nanoswarm.source_sha256"


def node_label(node: onnx.NodeProto, index: int) -> str:
    """How messages and C comments name a node: its name, or its index and first output when unnamed."""
    if node.name:
        return f"node '{node.name}' ({node.op_type})"
    first = node.output[0] if node.output else "no output"
    return f"node #{index} ({node.op_type}, output '{first}')"


@dataclass(frozen=True)
class ModelInfo:
    """A vetted model: the graph's one input and output, its opset and the facts the header reports."""

    model: onnx.ModelProto
    input_name: str
    input_shape: tuple[int, ...]   # batch axis fixed to 1
    output_name: str
    opset: int
    source: str                    # file name or graph name, for the header comment
    source_sha256: str | None
    layout: ObservationLayout | None

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))


def load_model(model: onnx.ModelProto | str | Path) -> ModelInfo:
    """Load (if given a path), inline local functions and check the interface; raise CodegenError if unfit."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise CodegenError(f"ONNX model '{path}' does not exist; export one first (nanoswarm export)")
        source = path.name
        try:
            model = onnx.load(str(path))
        except Exception as err:  # protobuf's decode errors have no common public type
            raise CodegenError(f"'{path}' is not a readable ONNX model ({err}); export it again") from None
    else:
        source = model.graph.name or "in-memory model"
    model = onnx.inliner.inline_local_functions(model)
    graph = model.graph
    initialized = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialized]
    if len(inputs) != 1:
        raise CodegenError(f"the model has {len(inputs)} inputs {[i.name for i in inputs]}; the generated C "
                           "takes exactly one (the observation): concatenate the inputs into one before export")
    if len(graph.output) != 1:
        raise CodegenError(f"the model has {len(graph.output)} outputs {[o.name for o in graph.output]}; the "
                           "generated C returns exactly one (the action): export only the action output")
    metadata = {p.key: p.value for p in model.metadata_props}
    input_shape = _input_shape(inputs[0])
    layout = _layout(metadata, int(np.prod(input_shape)))
    return ModelInfo(model=model, input_name=inputs[0].name, input_shape=input_shape,
                     output_name=graph.output[0].name, opset=_default_opset(model), source=source,
                     source_sha256=metadata.get(SHA_KEY), layout=layout)


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise CodegenError("the model imports no default-domain (ai.onnx) opset; re-export it with a standard opset")


def _input_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(tensor.elem_type) if value.type.HasField("tensor_type") else "not a tensor"
        raise CodegenError(f"input '{value.name}' is {kind}; the generated C reads float32 observations: "
                           "cast to float32 inside the exported module")
    if not tensor.HasField("shape"):
        raise CodegenError(f"input '{value.name}' has no shape; export with an example input of the real size")
    shape = []
    for axis, dim in enumerate(tensor.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif axis == 0:
            shape.append(1)        # the batch axis: the C function runs one observation per call
        else:
            raise CodegenError(f"input '{value.name}' has an unresolved dimension at axis {axis} "
                               f"('{dim.dim_param or '?'}'); only the leading batch axis may be dynamic: "
                               "export with fixed sizes for every other axis")
    return tuple(shape)


def _layout(metadata: dict[str, str], n_in: int) -> ObservationLayout | None:
    """The observation layout recorded by the exporter, checked against this nanoswarm and the input size."""
    if LAYOUT_KEY not in metadata:
        return None
    try:
        data: Any = json.loads(metadata[LAYOUT_KEY])
        layout = ObservationLayout.from_dict(data)
    except (ValueError, KeyError, TypeError) as err:
        raise CodegenError(f"metadata '{LAYOUT_KEY}' is unusable ({err}); re-export the model with this "
                           "version of nanoswarm") from None
    if layout.size != n_in:
        raise CodegenError(f"metadata '{LAYOUT_KEY}' describes {layout.size} observation values but the input "
                           f"has {n_in}; the metadata belongs to another model: re-export")
    return layout
