"""Specification of the ONNX -> C99 generator: each op emitter and whole policies against onnxruntime,
memory planning, the header contract, refusals, and C hygiene (host gcc, arm-none-eabi-gcc)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from nanoswarm.export.codegen import CodegenError, generate_c
from nanoswarm.export.host import HOST_CFLAGS, compile_host, onnxruntime_actions
from nanoswarm.export.onnx_export import action_metadata, export_onnx
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.params import load_params

IR_VERSION = 9  # what onnxruntime reads for every opset used here


# --- tiny models built with onnx.helper ------------------------------------------------------------------

def _model(nodes: list[onnx.NodeProto], shapes: list[tuple[int, ...]], consts: dict[str, np.ndarray] | None = None,
           opset: int = 18) -> onnx.ModelProto:
    """A model whose one input `obs` (1, n) is cut into operands x0, x1, ... of `shapes`; the op writes `y`."""
    sizes = [int(np.prod(s)) for s in shapes]
    starts = np.cumsum([0, *sizes])
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()]
    carve: list[onnx.NodeProto] = []
    for i, shape in enumerate(shapes):
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"shape{i}"))
        if opset >= 10:
            inits += [numpy_helper.from_array(np.array([v], np.int64), f"{k}{i}")
                      for k, v in (("start", starts[i]), ("end", starts[i + 1]), ("axis", 1))]
            carve.append(helper.make_node("Slice", ["obs", f"start{i}", f"end{i}", f"axis{i}"], [f"flat{i}"]))
        else:
            carve.append(helper.make_node("Slice", ["obs"], [f"flat{i}"], starts=[int(starts[i])],
                                          ends=[int(starts[i + 1])], axes=[1]))
        carve.append(helper.make_node("Reshape", [f"flat{i}", f"shape{i}"], [f"x{i}"]))
    graph = helper.make_graph(carve + nodes, "case", [helper.make_tensor_value_info("obs", TensorProto.FLOAT,
                                                                                   [1, sum(sizes)])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)


def op(op_type: str, inputs: list[str], output: str = "y", **attrs) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, [output], **attrs)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def ints(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


@dataclass
class Case:
    model: onnx.ModelProto
    low: float = -3.0       # range of the random observations
    high: float = 3.0


CASES: dict[str, Case] = {
    # Gemm / MatMul: transposes, alpha/beta, K and N not multiples of four, broadcast batches, vectors
    "gemm_transB_alpha_beta_bias": Case(_model([op("Gemm", ["x0", "W", "C"], transB=1, alpha=0.5, beta=2.0)],
                                               [(3, 5)], {"W": rand(4, 5), "C": rand(4)})),
    "gemm_transA_dynamic_B_column_bias": Case(_model([op("Gemm", ["x0", "x1", "C"], transA=1, alpha=1.5)],
                                                     [(5, 3), (5, 4)], {"C": rand(3, 1)})),
    "gemm_dynamic_bias_beta": Case(_model([op("Gemm", ["x0", "W", "x1"], beta=0.5)], [(2, 13), (4,)],
                                          {"W": rand(13, 4)})),
    "gemm_k2_no_bias": Case(_model([op("Gemm", ["x0", "W"])], [(1, 2)], {"W": rand(2, 3)})),
    "matmul_batched_constant_rhs": Case(_model([op("MatMul", ["x0", "W"])], [(2, 3, 6)], {"W": rand(6, 5)})),
    "matmul_both_dynamic_broadcast_batch": Case(_model([op("MatMul", ["x0", "x1"])], [(2, 1, 3, 5), (3, 5, 6)])),
    "matmul_vector_lhs": Case(_model([op("MatMul", ["x0", "W"])], [(9,)], {"W": rand(9, 4)})),
    "matmul_constant_lhs_vector_rhs": Case(_model([op("MatMul", ["W", "x0"])], [(5,)], {"W": rand(3, 5)})),
    "matmul_bias_scale_relu_fused": Case(_model([op("MatMul", ["x0", "W"], "h"), op("Add", ["b", "h"], "h2"),
                                                 op("Mul", ["h2", "s"], "h3"), op("Relu", ["h3"])],
                                                [(3, 8)], {"W": rand(8, 6), "b": rand(6), "s": np.float32(0.3)})),
    "matmul_then_add_computed_operand": Case(_model([op("MatMul", ["x0", "W"], "h"), op("Add", ["h", "x1"])],
                                                    [(2, 4), (2, 3)], {"W": rand(4, 3)})),
    # elementwise, with numpy broadcasting and a constant on either side
    **{f"{name.lower()}_same_shape": Case(_model([op(name, ["x0", "x1"])], [(3, 4), (3, 4)]), 0.5, 3.0)
       for name in ("Add", "Sub", "Mul", "Div")},
    **{f"{name.lower()}_broadcast_row_by_column": Case(_model([op(name, ["x0", "x1"])], [(3, 1), (1, 4)]), 0.5, 3.0)
       for name in ("Add", "Sub", "Mul", "Div")},
    **{f"{name.lower()}_constant_first": Case(_model([op(name, ["c", "x0"])], [(2, 3, 4)], {"c": rand(3, 1)}), 0.5, 3.0)
       for name in ("Add", "Sub", "Mul", "Div")},
    "div_by_constant_scalar": Case(_model([op("Div", ["x0", "c"])], [(5,)], {"c": np.float32(3.0)})),
    "sub_broadcast_into_smaller_first_operand": Case(_model([op("Sub", ["x0", "x1"])], [(4,), (3, 4)])),
    **{f"pow_constant_{str(e).replace('.', '_')}": Case(_model([op("Pow", ["x0", "e"])], [(6,)],
                                                               {"e": np.float32(e)}), 0.1, 3.0)
       for e in (2.0, 0.5, 3.0, 1.7)},
    "pow_computed_exponent": Case(_model([op("Pow", ["x0", "x1"])], [(6,), (6,)]), 0.1, 2.0),
    "relu": Case(_model([op("Relu", ["x0"])], [(7,)])),
    "leaky_relu": Case(_model([op("LeakyRelu", ["x0"], alpha=0.2)], [(7,)])),
    "tanh_wide_range": Case(_model([op("Tanh", ["x0"])], [(64,)]), -12.0, 12.0),
    "tanh_near_zero": Case(_model([op("Tanh", ["x0"])], [(64,)]), -0.01, 0.01),
    "elu": Case(_model([op("Elu", ["x0"], alpha=0.7)], [(64,)]), -10.0, 5.0),
    "sigmoid_wide_range": Case(_model([op("Sigmoid", ["x0"])], [(64,)]), -20.0, 20.0),
    "sqrt": Case(_model([op("Sqrt", ["x0"])], [(8,)]), 0.0, 10.0),
    "abs": Case(_model([op("Abs", ["x0"])], [(5,)])),
    "neg": Case(_model([op("Neg", ["x0"])], [(5,)])),
    "clip_min_only_opset13": Case(_model([op("Clip", ["x0", "lo"])], [(8,)], {"lo": np.float32(-0.5)}, opset=13)),
    "clip_both_bounds": Case(_model([op("Clip", ["x0", "lo", "hi"])], [(8,)],
                                    {"lo": np.float32(-0.5), "hi": np.float32(1.0)})),
    "clip_attributes_opset9": Case(_model([op("Clip", ["x0"], min=-1.0, max=0.5)], [(8,)], opset=9)),
    # softmax axis semantics, layer norm, reductions with axes as attribute or input
    "softmax_axis1_opset13": Case(_model([op("Softmax", ["x0"], axis=1)], [(2, 3, 4)]), -10.0, 10.0),
    "softmax_axis1_opset11_flattens_trailing_axes": Case(_model([op("Softmax", ["x0"], axis=1)], [(2, 3, 4)],
                                                                opset=11), -10.0, 10.0),
    "softmax_default_axis_of_transposed_input": Case(_model([op("Transpose", ["x0"], "t", perm=[1, 0]),
                                                             op("Softmax", ["t"])], [(3, 5)])),
    "layer_norm_last_axis": Case(_model([op("LayerNormalization", ["x0", "g", "b"], epsilon=1e-3)], [(3, 8)],
                                        {"g": rand(8), "b": rand(8, seed=1)}, opset=17)),
    "layer_norm_two_axes_no_bias": Case(_model([op("LayerNormalization", ["x0", "g"], axis=1)], [(2, 3, 4)],
                                               {"g": rand(3, 4)}, opset=17)),
    "reduce_sum_axes_input_no_keepdims": Case(_model([op("ReduceSum", ["x0", "a"], keepdims=0)], [(2, 3, 4)],
                                                     {"a": ints(1)}, opset=13)),
    "reduce_sum_axes_attribute_opset11": Case(_model([op("ReduceSum", ["x0"], axes=[0, 2])], [(2, 3, 4)], opset=11)),
    "reduce_sum_empty_axes_noop": Case(_model([op("ReduceSum", ["x0"], noop_with_empty_axes=1)], [(2, 3)])),
    "reduce_mean_axes_input_opset18": Case(_model([op("ReduceMean", ["x0", "a"])], [(2, 3, 4)], {"a": ints(-1)})),
    "reduce_mean_all_axes_opset13": Case(_model([op("ReduceMean", ["x0"])], [(2, 3, 4)], opset=13)),
    # layout: views, and copies where a view cannot do
    "concat_computed_and_constant": Case(_model([op("Concat", ["x0", "c", "x1"], axis=-1)], [(2, 3), (2, 1)],
                                                {"c": rand(2, 2)})),
    "concat_axis0": Case(_model([op("Concat", ["x1", "x0"], axis=0)], [(2, 3), (1, 3)])),
    "reshape_zero_and_minus_one": Case(_model([op("Reshape", ["x0", "s"], "r"), op("Tanh", ["r"])], [(2, 6)],
                                              {"s": ints(0, 3, -1)})),
    "flatten_axis2": Case(_model([op("Flatten", ["x0"], "f", axis=2), op("Relu", ["f"])], [(2, 3, 4)])),
    "squeeze_attribute_opset11": Case(_model([op("Squeeze", ["x0"], "s", axes=[1]), op("Relu", ["s"])], [(3, 1, 2)],
                                             opset=11)),
    "squeeze_axes_input": Case(_model([op("Squeeze", ["x0", "a"], "s"), op("Relu", ["s"])], [(3, 1, 2)],
                                      {"a": ints(-2)})),
    "unsqueeze_attribute_opset11": Case(_model([op("Unsqueeze", ["x0"], "u", axes=[0, 2]), op("Relu", ["u"])],
                                               [(3, 2)], opset=11)),
    "unsqueeze_axes_input": Case(_model([op("Unsqueeze", ["x0", "a"], "u"), op("Relu", ["u"])], [(3, 2)],
                                        {"a": ints(1)})),
    "identity_of_input_is_copied_out": Case(_model([op("Identity", ["x0"])], [(5,)])),
    "transpose_then_reshape_copies": Case(_model([op("Transpose", ["x0"], "t", perm=[1, 0]),
                                                  op("Reshape", ["t", "s"], "r"), op("Tanh", ["r"])], [(3, 4)],
                                                 {"s": ints(12)})),
    "transposed_operand_of_add": Case(_model([op("Transpose", ["x0"], "t", perm=[2, 0, 1]), op("Add", ["t", "x1"])],
                                             [(2, 3, 4), (4, 2, 3)])),
    "transpose_as_output_is_copied_out": Case(_model([op("Transpose", ["x0"], perm=[1, 0])], [(3, 4)])),
    "expand_is_a_broadcast_view": Case(_model([op("Expand", ["x0", "s"], "e"), op("Mul", ["e", "e"])], [(3, 1)],
                                              {"s": ints(2, 3, 4)})),
    "tile": Case(_model([op("Tile", ["x0", "r"])], [(2, 3)], {"r": ints(2, 3)})),
    "output_independent_of_the_observation": Case(_model([op("Add", ["c", "c"])], [(2,)], {"c": rand(2, 3)})),
    "slice_steps_and_negative_indices": Case(_model([op("Slice", ["x0", "s", "e", "a", "st"])], [(4, 10)],
                                                    {"s": ints(-1, 1), "e": ints(-5, 100), "a": ints(1, 0),
                                                     "st": ints(-2, 2)})),
    "slice_attributes_opset9": Case(_model([op("Slice", ["x0"], starts=[1, -3], ends=[3, 1000], axes=[0, 1])],
                                           [(4, 5)], opset=9)),
    "gather_scalar_index_is_a_view": Case(_model([op("Gather", ["x0", "i"], "g", axis=1), op("Relu", ["g"])],
                                                 [(3, 4)], {"i": np.array(2, np.int64)})),
    "gather_irregular_indices": Case(_model([op("Gather", ["x0", "i"], axis=0)], [(4, 3)], {"i": ints(2, 0, 2, -1)})),
    "gather_evenly_spaced_2d_indices": Case(_model([op("Gather", ["x0", "i"], axis=1)], [(2, 8)],
                                                   {"i": np.array([[1, 3], [5, 7]], np.int64)})),
    "cast_to_float": Case(_model([op("Cast", ["x0"], "c", to=TensorProto.FLOAT), op("Tanh", ["c"])], [(4,)])),
    "torch_style_shape_arithmetic": Case(_model([
        op("Shape", ["x0"], "shp"), op("Gather", ["shp", "zero"], "n", axis=0), op("Unsqueeze", ["n", "ax"], "n1"),
        op("Concat", ["n1", "minus1"], "target", axis=0), op("Cast", ["target"], "target64", to=TensorProto.INT64),
        op("Reshape", ["x0", "target64"], "r"), op("ConstantOfShape", ["target_const"], "zeros",
                                                  value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32(2.0))),
        op("Mul", ["zeros", "k"], "ones"), op("Add", ["r", "ones"])],
        [(2, 3, 2)], {"zero": np.array(0, np.int64), "ax": ints(0), "minus1": ints(-1), "target_const": ints(2, 6)})),
}


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_onnxruntime(name: str, tmp_path: Path):
    case = CASES[name]
    generated = generate_c(case.model, tmp_path)
    policy = compile_host(tmp_path, tmp_path / "build")
    obs = np.random.default_rng(1).uniform(case.low, case.high, size=(16, generated.n_in)).astype(np.float32)
    np.testing.assert_allclose(policy(obs), onnxruntime_actions(case.model, obs), rtol=1e-5, atol=2e-6)


# --- whole policies, exported by nanoswarm's exporter ------------------------------------------------------

def flight_policy(actor: str, neighbors: int, activation: str, hidden: int = 16, head: tuple[int, ...] = (32, 32),
                  seed: int = 0) -> SwarmPolicy:
    """A policy with non-trivial normalisation and a head that spreads its actions (the initial head gives
    nearly the same action for every observation, which would make any comparison easy)."""
    torch.manual_seed(seed)
    policy = SwarmPolicy(ObservationLayout(neighbors),
                         PolicyConfig(actor=actor, hidden=hidden, head=head, activation=activation))
    with torch.no_grad():
        policy.obs_norm.mean.normal_(0.0, 0.5)
        policy.obs_norm.var.uniform_(0.5, 2.0)
        policy.actor.mean.weight.normal_(0.0, 1.0)
    return policy


def exported(policy: SwarmPolicy, path: Path) -> Path:
    export_onnx(policy, path, source_sha256="ab" * 32,
                action_meta=action_metadata(load_params("crazyflie21_sysid")))
    return path


@pytest.mark.parametrize("actor,neighbors,activation,hidden,head", [
    ("attention", 6, "tanh", 32, (64, 64)),
    ("attention", 0, "elu", 16, (32, 32)),
    ("deepsets", 3, "relu", 16, (32, 32)),
    ("deepsets", 0, "tanh", 16, (32,)),
    ("mlp", 6, "elu", 16, (64, 64)),
])
def test_policy_matches_onnxruntime(actor, neighbors, activation, hidden, head, tmp_path: Path):
    model = exported(flight_policy(actor, neighbors, activation, hidden, head), tmp_path / "policy.onnx")
    generated = generate_c(model, tmp_path / "c")
    obs = np.random.default_rng(2).normal(0.0, 2.0, size=(3000, generated.n_in)).astype(np.float32)
    want = onnxruntime_actions(model, obs)
    got = compile_host(tmp_path / "c", tmp_path / "build")(obs)
    assert want.std(axis=0).min() > 0.05, "the actions hardly vary: the comparison would prove little"
    assert np.abs(got - want).max() <= 1e-4


def test_header_carries_observation_layout_and_model_facts(tmp_path: Path):
    layout = ObservationLayout(num_neighbors=3)
    model = exported(flight_policy("attention", 3, "tanh"), tmp_path / "policy.onnx")
    generated = generate_c(model, tmp_path)
    header = generated.h_path.read_text()
    defines = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define NANOSWARM_(\w+) (\d+)", header)}
    expected = {"POLICY_N_IN": layout.size, "POLICY_N_OUT": 4, "POLICY_PARAMS": generated.params,
                "POLICY_SCRATCH_FLOATS": generated.scratch_floats, "OBS_NUM_NEIGHBORS": 3,
                "OBS_NEIGHBOR_SIZE": layout.neighbor_size, "OBS_SELF_SIZE": layout.self_size,
                "OBS_OBSTACLE_POINTS": 9}
    for name, part in layout.slices.items():
        macro = "OBS_" + name.upper().replace(".", "_")
        expected[f"{macro}_START"], expected[f"{macro}_LEN"] = part.start, part.stop - part.start
    assert defines == expected
    assert "NANOSWARM_OBS_SELF_REL_GOAL_START" in header and "ab" * 32 in header
    assert f"Gemm {generated.ops['Gemm']}" in header and f"scratch: {generated.scratch_floats} floats" in header
    assert generated.params == sum(int(np.prod(t.dims)) for t in onnx.load(model).graph.initializer
                                   if t.data_type == TensorProto.FLOAT and np.prod(t.dims) > 1)


def test_header_without_layout_metadata_has_only_sizes(tmp_path: Path):
    generated = generate_c(CASES["relu"].model, tmp_path)
    header = generated.h_path.read_text()
    assert "#define NANOSWARM_POLICY_N_IN 7" in header and "#define NANOSWARM_POLICY_N_OUT 7" in header
    assert "NANOSWARM_OBS_" not in header


# --- memory --------------------------------------------------------------------------------------------------

def test_intermediates_share_scratch_memory(tmp_path: Path):
    """16 -> 64 -> 64 -> 64 -> 4: three 64-float activations, two alive at a time, the last layer writing
    straight into the caller's output."""
    sizes = [16, 64, 64, 64, 4]
    nodes, consts, x = [], {}, "x0"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        consts[f"W{i}"], consts[f"b{i}"] = rand(n_out, n_in, seed=i), rand(n_out, seed=10 + i)
        last = i == len(sizes) - 2
        nodes += [op("Gemm", [x, f"W{i}", f"b{i}"], f"h{i}", transB=1), op("Tanh", [f"h{i}"], "y" if last else f"a{i}")]
        x = f"a{i}"
    generated = generate_c(_model(nodes, [(1, 16)], consts), tmp_path)
    assert generated.scratch_floats == 2 * 64
    assert generated.params == sum(v.size for v in consts.values())


def test_layout_ops_cost_no_copies_or_memory(tmp_path: Path):
    model = _model([op("Gemm", ["x0", "W"], "h"), op("Reshape", ["h", "s"], "r"), op("Unsqueeze", ["r", "a"], "u"),
                    op("Flatten", ["u"], "f"), op("Identity", ["f"], "i"), op("Relu", ["i"])],
                   [(1, 8)], {"W": rand(8, 12), "s": ints(3, 4), "a": ints(0)})
    generated = generate_c(model, tmp_path)
    source = generated.c_path.read_text()
    assert generated.scratch_floats == 0 and "scratch" not in source
    assert source.count("/* node") == 2      # the Gemm and the Relu, which overwrites the Gemm's output in place


def test_bias_scale_and_activation_run_inside_the_matmul_loop(tmp_path: Path):
    generated = generate_c(CASES["matmul_bias_scale_relu_fused"].model, tmp_path)
    source = generated.c_path.read_text()
    assert source.count("/* node") == 1 and generated.scratch_floats == 0
    assert generated.ops == {"MatMul": 1, "Add": 1, "Mul": 1, "Relu": 1, "Slice": 1, "Reshape": 1}


def test_small_attention_policy_fits_in_4kb_of_ram(tmp_path: Path):
    model = exported(flight_policy("attention", 6, "tanh", hidden=16, head=(32, 32)), tmp_path / "policy.onnx")
    generated = generate_c(model, tmp_path)
    assert 3000 < generated.params < 8000
    assert 4 * generated.scratch_floats <= 4096


# --- refusals ------------------------------------------------------------------------------------------------

def _graph_model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bad", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def test_unsupported_op_is_refused_by_node_name_and_type(tmp_path: Path):
    conv = helper.make_node("Conv", ["x0", "W"], ["y"], name="encoder_conv")
    model = _model([conv], [(1, 1, 4, 4)], {"W": rand(1, 1, 3, 3)})
    with pytest.raises(CodegenError, match=r"node 'encoder_conv' \(Conv\) is not supported .*supported: .*Gemm"):
        generate_c(model, tmp_path)


def test_unnamed_unsupported_node_is_named_by_index_and_output(tmp_path: Path):
    lstm = op("LSTM", ["x0", "W", "R"], hidden_size=2)
    model = _model([lstm], [(3, 1, 2)], {"W": rand(1, 8, 2), "R": rand(1, 8, 2)})
    with pytest.raises(CodegenError, match=r"node #2 \(LSTM, output 'y'\) is not supported"):
        generate_c(model, tmp_path)


def test_two_inputs_are_refused(tmp_path: Path):
    model = _graph_model([op("Add", ["a", "b"])],
                         [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in "ab"],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    with pytest.raises(CodegenError, match=r"2 inputs \['a', 'b'\].*exactly one"):
        generate_c(model, tmp_path)


def test_two_outputs_are_refused(tmp_path: Path):
    model = _graph_model([op("Relu", ["x"], "y"), op("Tanh", ["x"], "z")],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                         [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in "yz"])
    with pytest.raises(CodegenError, match=r"2 outputs \['y', 'z'\].*exactly one"):
        generate_c(model, tmp_path)


def test_non_float_input_is_refused(tmp_path: Path):
    model = _graph_model([op("Cast", ["x"], to=TensorProto.FLOAT)],
                         [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 3])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    with pytest.raises(CodegenError, match=r"input 'x' is INT64.*float32"):
        generate_c(model, tmp_path)


def test_unresolved_dimension_is_refused(tmp_path: Path):
    model = _graph_model([op("Relu", ["x"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])])
    with pytest.raises(CodegenError, match=r"input 'x' has an unresolved dimension at axis 1 \('n'\)"):
        generate_c(model, tmp_path)


def test_bound_computed_from_the_observation_is_refused(tmp_path: Path):
    model = _model([helper.make_node("Clip", ["x0", "x1"], ["y"], name="clip")], [(3,), ()])
    with pytest.raises(CodegenError, match=r"node 'clip' \(Clip\): its min .* computed from the observation"):
        generate_c(model, tmp_path)


def test_layout_metadata_of_another_model_is_refused(tmp_path: Path):
    model = exported(flight_policy("mlp", 2, "tanh"), tmp_path / "policy.onnx")
    proto = onnx.load(model)
    for prop in proto.metadata_props:
        if prop.key == "nanoswarm.observation_layout":
            prop.value = json.dumps(ObservationLayout(num_neighbors=5).to_dict())
    with pytest.raises(CodegenError, match=r"describes 58 observation values but the input has 40"):
        generate_c(proto, tmp_path / "c")


# --- C hygiene -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def attention_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated C of a small attention policy (tanh, hidden 8, head 16, K = 6): every kernel kind."""
    root = tmp_path_factory.mktemp("attention_c")
    generate_c(exported(flight_policy("attention", 6, "tanh", hidden=8, head=(16,)), root / "policy.onnx"), root)
    return root


def test_generated_c_has_no_double_malloc_or_stdio(attention_c: Path):
    text = (attention_c / "policy.c").read_text() + (attention_c / "policy.h").read_text()
    source = re.sub(r"/\*.*?\*/", "", text, flags=re.S)   # the code, without its comments
    assert not re.search(r"\b(double|malloc|calloc|free|printf|stdio)\b", source)
    literals = re.findall(r"(?<![\w.])\d+\.\d*(?:e[-+]?\d+)?f?", source)
    assert literals and all(lit.endswith("f") for lit in literals)


def test_generated_c_compiles_as_strict_c99(attention_c: Path):
    flags = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion",
             "-fsingle-precision-constant", "-Wconversion", "-fsyntax-only"]
    done = subprocess.run(["gcc", *flags, str(attention_c / "policy.c")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert {"-std=c99", "-Werror", "-Wdouble-promotion"} <= set(HOST_CFLAGS)


def test_cortex_m4_object_has_no_double_precision_code(attention_c: Path, tmp_path: Path):
    obj = tmp_path / "policy.o"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                    "-O2", "-Wdouble-promotion", "-Werror", "-c", str(attention_c / "policy.c"), "-o", str(obj)],
                   check=True)
    listing = subprocess.run(["arm-none-eabi-objdump", "-dr", str(obj)], capture_output=True, text=True,
                             check=True).stdout
    assert "vfma.f32" in listing or "vmla.f32" in listing
    assert not re.search(r"\.f64|__aeabi_d|__aeabi_f2d|__\w+df[23]\b", listing)
    assert not re.search(r"R_ARM_THM_CALL\s+(tanhf|expf)\b", listing), "newlib's slow tanhf/expf are not called"
