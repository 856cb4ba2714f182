"""From the ONNX graph to a list of kernels over static shapes.

Nodes are visited in graph order (ONNX requires topological order). A node whose inputs are all
known at generation time is evaluated right away with onnx's reference implementation, which folds
the weights' preprocessing and the shape arithmetic of torch exports (Shape, Gather, Cast, Concat on
shapes, ConstantOfShape, ...) into constants. Every other node goes to its emitter in the op table,
after onnx's shape inference has given its output shapes, with the constant inputs as data so that
Reshape targets and the like resolve. Nodes the output does not depend on are skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from nanoswarm.export.codegen.ir import Kernel, Node
from nanoswarm.export.codegen.model import CodegenError, ModelInfo, node_label
from nanoswarm.export.codegen.ops import OPS
from nanoswarm.export.codegen.tensors import Buffer, Shape, Value, contiguous_strides


@dataclass
class Program:
    """The lowered model: the kernels that compute the output tensor from the input buffer."""

    output: Value
    kernels: list[Kernel]
    ops: Counter[str]


def lower(info: ModelInfo) -> Program:
    graph = info.model.graph
    values: dict[str, Value] = {t.name: Value(t.name, tuple(t.dims), const=numpy_helper.to_array(t))
                                for t in graph.initializer}
    values[info.input_name] = Value(info.input_name, info.input_shape, buffer=Buffer(info.n_in, kind="input"),
                                    strides=contiguous_strides(info.input_shape))
    nodes = _needed(graph, info.output_name)
    needed = {name for _, n in nodes for name in n.input} | {info.output_name}
    kernels: list[Kernel] = []
    ops: Counter[str] = Counter()
    for index, proto in nodes:
        label = node_label(proto, index)
        inputs = [_lookup(values, name, label) if name else None for name in proto.input]
        if all(v is None or v.is_const for v in inputs):
            outputs = _fold(proto, inputs, info.opset, label)
        else:
            outputs = _emit(proto, inputs, info.opset, label, kernels)
            ops[proto.op_type] += 1
        for i, name in enumerate(proto.output):
            if i < len(outputs):
                values[name] = outputs[i]
            elif name in needed:
                raise CodegenError(f"{label}: output {i} ('{name}') is not supported by the C generator, only "
                                   f"output 0; export without using '{name}'")
    if info.output_name not in values:
        raise CodegenError(f"the graph output '{info.output_name}' is produced by no node; fix the model")
    return Program(values[info.output_name], kernels, ops)


def _needed(graph: onnx.GraphProto, output: str) -> list[tuple[int, onnx.NodeProto]]:
    """The nodes the output depends on, in graph order, with their indices in the graph."""
    wanted, keep = {output}, []
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        if wanted.intersection(node.output):
            keep.append((index, node))
            wanted.update(name for name in node.input if name)
    return keep[::-1]


def _lookup(values: dict[str, Value], name: str, label: str) -> Value:
    if name not in values:
        raise CodegenError(f"{label}: input '{name}' is not computed before it (graph not in topological "
                           "order, or an outer-scope name); re-export or sort the model with onnx tools")
    return values[name]


def _fold(proto: onnx.NodeProto, inputs: list[Value | None], opset: int, label: str) -> list[Value]:
    """Evaluate a node whose inputs are all constants with onnx's reference implementation."""
    names = [n for n, v in zip(proto.input, inputs) if v is not None]
    feeds = {n: v.const for n, v in zip(proto.input, inputs) if v is not None}
    graph = helper.make_graph(
        [proto], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(feeds[n].dtype), feeds[n].shape)
         for n in dict.fromkeys(names)],
        [helper.make_empty_tensor_value_info(n) for n in proto.output if n])
    try:
        results = ReferenceEvaluator(graph, opsets={"": opset}).run(None, feeds)
    except Exception as err:  # the reference raises many types; all mean the same to the user
        raise CodegenError(f"{label}: could not be evaluated at generation time ({type(err).__name__}: {err}); "
                           "check the model with onnx.checker and onnxruntime") from None
    return [Value(n, tuple(np.shape(r)), const=np.asarray(r)) for n, r in zip(proto.output, results)]


def _emit(proto: onnx.NodeProto, inputs: list[Value | None], opset: int, label: str,
          kernels: list[Kernel]) -> list[Value]:
    if proto.domain not in ("", "ai.onnx") or proto.op_type not in OPS:
        raise CodegenError(f"{label} is not supported by the C generator (supported: {', '.join(sorted(OPS))}); "
                           "replace it in the exported module, or add an emitter to nanoswarm.export.codegen.ops")
    attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    node = Node(proto, label, inputs, _infer_shapes(proto, inputs, opset, label), opset, attrs)
    lowered = OPS[proto.op_type](node)
    for value, shape in zip(lowered.outputs, node.out_shapes):
        assert value.shape == shape, f"{label}: emitted shape {value.shape}, inferred {shape}"
    kernels.extend(lowered.kernels)
    return lowered.outputs


def _infer_shapes(proto: onnx.NodeProto, inputs: list[Value | None], opset: int, label: str) -> list[Shape]:
    """Output shapes by onnx shape inference on this node alone, constants given as data."""
    types, data = {}, {}
    for name, value in zip(proto.input, inputs):
        if value is None:
            continue
        if value.is_const:
            data[name] = numpy_helper.from_array(value.const, name)
            elem = helper.np_dtype_to_tensor_dtype(value.const.dtype)
        else:
            elem = onnx.TensorProto.FLOAT
        types[name] = helper.make_tensor_type_proto(elem, value.shape)
    try:
        schema = onnx.defs.get_schema(proto.op_type, opset, proto.domain)
        out_types = onnx.shape_inference.infer_node_outputs(schema, proto, types, data,
                                                            opset_imports=[helper.make_opsetid("", opset)])
    except Exception as err:  # inference errors come as several onnx exception types
        raise CodegenError(f"{label}: shape inference failed ({err}); check the model with "
                           "onnx.checker.check_model(model, full_check=True)") from None
    shapes = []
    for name in proto.output:
        if not name:
            continue
        tensor = out_types[name].tensor_type if name in out_types else None
        dims = tensor.shape.dim if tensor is not None and tensor.HasField("shape") else None
        if dims is None or any(not d.HasField("dim_value") for d in dims):
            raise CodegenError(f"{label}: the shape of output '{name}' cannot be resolved at generation time; "
                               "make the sizes it depends on constant (fixed input size, constant shapes)")
        shape = tuple(d.dim_value for d in dims)
        if 0 in shape:
            raise CodegenError(f"{label}: output '{name}' is empty (shape {shape}); remove the node from the model")
        shapes.append(shape)
    return shapes
