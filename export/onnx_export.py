"""Export the flight policy to ONNX: raw observations in, the motor commands it flies out.

The exported graph is `actor(obs_norm(obs))`, the tanh-bounded mean that `SwarmPolicy.deterministic_action`
flies, with the normalisation inside the model so that every consumer (onnxruntime, the C generator,
the Crazyflie app) feeds raw observations and cannot forget or double-apply it. The normalisation is
kept as its own Sub, Mul, Clip rather than multiplied into the first layer: its clip is not linear,
and keeping the statistics as constants computed by torch makes the export reproduce torch's numbers.

Why the TorchScript exporter: it takes ~0.1-0.3 s where the dynamo exporter takes 2-6 s (tests export
many models), and its extra nodes are removed here: onnxscript's optimizer folds constants, turns
Constant nodes into initializers and drops dead nodes, and Reshapes whose target shape was computed
from the dynamic batch size at run time get a constant target shape with -1 for the batch. What is
left is the model's own arithmetic. A lone drone's (K = 0) zero neighbour summary still needs its
batch size at run time (Shape, ConstantOfShape); batch-1 code generation folds it.
"""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import onnxscript.optimizer
import torch
from onnx import numpy_helper, shape_inference
from torch import nn

from nanoswarm.export.errors import OnnxExportError
from nanoswarm.policies import SwarmPolicy
from nanoswarm.policies.normalization import RunningNorm
from nanoswarm.sim.params import QuadParams

SCHEMA_VERSION = "1"
OPSET = 18
INPUT_NAME = "obs"
OUTPUT_NAME = "action"
MOTORS = 4
ACTION_KEYS = ("motors", "range", "thrust_fraction", "thrust_curve", "thrust_max_n")
META_SCHEMA = "nanoswarm.schema_version"
META_LAYOUT = "nanoswarm.observation_layout"
META_ACTION = "nanoswarm.action"
META_SOURCE = "nanoswarm.source_sha256"


class FrozenNorm(RunningNorm):
    """A copy of a RunningNorm whose scale torch computed once, so the exported constant is exactly the
    scale the policy flies with (folding rsqrt in ONNX could round it differently)."""

    def __init__(self, norm: RunningNorm):
        super().__init__(norm.mean.numel(), norm.clip, norm.var_floor)
        self.load_state_dict(norm.state_dict())
        self.register_buffer("frozen_scale", norm.scale().detach().clone())

    def scale(self) -> torch.Tensor:
        return self.frozen_scale


class FlightActor(nn.Module):
    """Raw observations (B, obs) to the deterministic flight action (B, 4) in (-1, 1), on the CPU.

    Holds copies, so exporting neither moves the caller's policy between devices nor changes its mode.
    """

    def __init__(self, policy: SwarmPolicy):
        super().__init__()
        self.obs_norm = FrozenNorm(policy.obs_norm).cpu()
        self.actor = copy.deepcopy(policy.actor).cpu()
        self.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.obs_norm(obs))


def action_metadata(params: QuadParams) -> dict[str, Any]:
    """The `nanoswarm.action` description of how an action maps to thrust on airframe `params`."""
    return {"motors": MOTORS, "range": [-1, 1], "thrust_fraction": "(a+1)/2",
            "thrust_curve": list(params.thrust_curve), "thrust_max_n": params.thrust_max}


def export_onnx(policy: SwarmPolicy, path: Path, *, source_sha256: str, action_meta: dict) -> onnx.ModelProto:
    """Write the policy's flight action as a checked ONNX model to `path` and return it.

    Input `obs` (batch, layout.size) of raw observations, output `action` (batch, 4); batch is dynamic.
    The metadata records the observation layout, the action mapping and the source checkpoint's digest.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", source_sha256):
        raise OnnxExportError(f"source_sha256 '{source_sha256}' is not a SHA-256 hex digest; pass "
                              "nanoswarm.training.checkpoint.file_digest(checkpoint_path)")
    missing = [key for key in ACTION_KEYS if key not in action_meta]
    if missing or action_meta["motors"] != MOTORS:
        raise OnnxExportError(f"action_meta {action_meta} lacks {missing} or has motors != {MOTORS}; "
                              "build it with action_metadata(params)")
    model = _trace(FlightActor(policy), policy.layout.size)
    onnx.helper.set_model_props(model, {
        META_SCHEMA: SCHEMA_VERSION,
        META_LAYOUT: json.dumps(policy.layout.to_dict()),
        META_ACTION: json.dumps(action_meta),
        META_SOURCE: source_sha256,
    })
    model.doc_string = "nanoswarm flight policy: raw observations to motor commands in [-1, 1]"
    onnx.checker.check_model(model, full_check=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return model


def _trace(module: FlightActor, obs_size: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation on every call
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(2, obs_size),), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET, dynamo=False)
    model = onnxscript.optimizer.optimize(onnx.load_from_string(buffer.getvalue()))
    return onnxscript.optimizer.optimize(_constant_reshapes(model))


def _constant_reshapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every Reshape whose result has one dynamic dimension a constant target shape (-1 there), so
    the Shape/Gather/Concat arithmetic that computed the target at run time becomes dead code."""
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {info.name: [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
              for info in inferred.graph.value_info}
    constants = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        dims = shapes.get(node.output[0])
        if node.op_type != "Reshape" or node.input[1] in constants or dims is None:
            continue
        if dims.count(None) == 1 and all(d is None or d > 0 for d in dims):
            target = np.array([-1 if d is None else d for d in dims], dtype=np.int64)
            name = f"{node.output[0]}_shape"
            model.graph.initializer.append(numpy_helper.from_array(target, name))
            node.input[1] = name
    return model


def compare_with_torch(policy: SwarmPolicy, model_path: Path, observations: np.ndarray) -> float:
    """Largest absolute difference between onnxruntime on the exported model and the policy's
    `deterministic_action` in torch, over raw observations (N, layout.size)."""
    obs = np.ascontiguousarray(observations, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != policy.layout.size:
        raise OnnxExportError(f"observations have shape {obs.shape}, the policy takes (N, {policy.layout.size})")
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    exported = session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0]
    device = next(policy.parameters()).device
    with torch.inference_mode():
        flown = policy.deterministic_action(torch.from_numpy(obs).to(device).unsqueeze(0))[0].cpu().numpy()
    return float(np.abs(exported - flown).max())
