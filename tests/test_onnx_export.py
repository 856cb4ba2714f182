"""Specification of the ONNX export: the exported model is the flown policy, on raw observations, with
its metadata, for every actor kind; onnxruntime is the oracle's runner and torch the reference."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from nanoswarm.export.observations import ObservationError, random_observations, recorded_observations
from nanoswarm.export.onnx_export import (
    INPUT_NAME, OUTPUT_NAME, OnnxExportError, action_metadata, compare_with_torch, export_onnx)
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.observation import ObservationLayout
from nanoswarm.sim.params import load_params
from nanoswarm.training.checkpoint import file_digest, load_policy, resolve_checkpoint
from nanoswarm.training.evaluate import eval_env_config

TOLERANCE = 1e-5
DIGEST = "ab" * 32
ACTION = action_metadata(load_params("crazyflie21_sysid"))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tests run tiny batches: on a shared 2-core machine, torch's intra-op threads waiting on each
    other made a 40-drone forward pass take 0.4 s instead of 5 ms. One thread is faster here, always."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_policy(actor: str, k: int, seed: int = 0) -> SwarmPolicy:
    """A small random policy with non-trivial normalisation statistics (some variances below the floor)
    and a head large enough that its actions vary across observations (fresh heads output ~hover)."""
    torch.manual_seed(seed)
    policy = SwarmPolicy(ObservationLayout(num_neighbors=k), PolicyConfig(actor=actor, hidden=16, head=(32,)))
    size = policy.layout.size
    with torch.no_grad():
        policy.obs_norm.mean.copy_(torch.randn(size))
        policy.obs_norm.var.copy_(torch.exp(2 * torch.randn(size)))
        policy.obs_norm.var[::7] = 1e-6
        policy.actor.mean.weight.normal_(0.0, 0.5)
    return policy


def run(path: Path, obs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: obs.astype(np.float32)})[0]


def flown(policy: SwarmPolicy, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return policy.deterministic_action(torch.from_numpy(obs).unsqueeze(0))[0].numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[SwarmPolicy, Path, onnx.ModelProto]:
    policy = make_policy("attention", 6)
    path = tmp_path_factory.mktemp("onnx") / "policy.onnx"
    return policy, path, export_onnx(policy, path, source_sha256=DIGEST, action_meta=ACTION)


def test_export_passes_the_full_checker_with_a_clean_graph(exported):
    _, path, model = exported
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    ops = Counter(node.op_type for node in model.graph.node)
    # no run-time shape arithmetic, no Constant nodes, no ops left over constants: only the model's maths
    assert not {"Shape", "Gather", "Constant", "ConstantOfShape", "Sqrt", "Div"} & set(ops)
    assert set(ops) <= {"Add", "Clip", "Concat", "Gemm", "MatMul", "Mul", "ReduceSum", "Reshape", "Slice", "Softmax",
                        "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze"}
    assert ops["Softmax"] == 2 and ops["Clip"] == 1  # two attentions; one clip, the normalisation's
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("obs", "action")
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 64]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 4]


def test_metadata_round_trips(exported):
    policy, path, _ = exported
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["nanoswarm.schema_version"] == "1"
    assert ObservationLayout.from_dict(json.loads(meta["nanoswarm.observation_layout"])) == policy.layout
    assert json.loads(meta["nanoswarm.action"]) == ACTION
    assert ACTION["thrust_max_n"] == pytest.approx(0.110128) and ACTION["thrust_fraction"] == "(a+1)/2"
    assert meta["nanoswarm.source_sha256"] == DIGEST


def test_dynamic_batch_runs_batch_1_and_1000(exported):
    policy, path, _ = exported
    obs = random_observations(policy.layout, 1000, seed=1)
    batch = run(path, obs)
    single = run(path, obs[:1])
    assert batch.shape == (1000, 4) and single.shape == (1, 4)
    np.testing.assert_allclose(single[0], batch[0], atol=TOLERANCE)
    np.testing.assert_allclose(batch, flown(policy, obs), atol=TOLERANCE)


def test_export_is_deterministic(exported, tmp_path):
    policy, path, _ = exported
    again = tmp_path / "again.onnx"
    export_onnx(policy, again, source_sha256=DIGEST, action_meta=ACTION)
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("actor", ["attention", "deepsets", "mlp"])
@pytest.mark.parametrize("k", [0, 6])
def test_matches_torch_on_random_observations(actor, k, tmp_path):
    policy = make_policy(actor, k, seed=k)
    path = tmp_path / "policy.onnx"
    export_onnx(policy, path, source_sha256=DIGEST, action_meta=ACTION)
    obs = random_observations(policy.layout, 2000, seed=k)
    assert flown(policy, obs).std(axis=0).min() > 0.05  # the comparison is not between near-constants
    assert compare_with_torch(policy, path, obs) <= TOLERANCE


def test_normalisation_is_folded_into_the_model(exported):
    policy, path, _ = exported
    obs = random_observations(policy.layout, 500, seed=2)
    with torch.no_grad():
        unnormalised = policy.actor(torch.from_numpy(obs)).numpy()
    exported_actions = run(path, obs)
    np.testing.assert_allclose(exported_actions, flown(policy, obs), atol=TOLERANCE)
    assert np.abs(exported_actions - unnormalised).max() > 0.1


def test_shipped_policy_matches_torch_on_recorded_flight(tmp_path):
    policy, data = load_policy("swarm8")
    path = tmp_path / "swarm8.onnx"
    export_onnx(policy, path, source_sha256=file_digest(resolve_checkpoint("swarm8")), action_meta=ACTION)
    env = eval_env_config(data)
    recorded = recorded_observations(policy, env, 2000, seed=0, steps=50)
    assert recorded.shape == (2000, policy.layout.size) and np.isfinite(recorded).all()
    speed = np.linalg.norm(recorded[:, policy.layout.slices["self.vel"]], axis=1)
    assert speed[:16].max() < 0.1 and speed[-200:].max() > 0.5  # recorded from rest into flight
    assert compare_with_torch(policy, path, recorded) <= TOLERANCE
    assert compare_with_torch(policy, path, random_observations(policy.layout, 2000, seed=0)) <= TOLERANCE


def test_random_observations_span_what_a_drone_sees():
    layout = ObservationLayout(num_neighbors=6)
    obs = random_observations(layout, 4000, seed=3)
    s = layout.slices
    assert obs.shape == (4000, layout.size) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs, random_observations(layout, 4000, seed=3))
    rot = obs[:, s["self.rot"]].reshape(-1, 3, 3).astype(np.float64)
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    assert 4.5 < np.abs(obs[:, s["self.rel_goal"]]).max() <= 5.0
    assert 9.0 < np.abs(obs[:, s["self.omega"]]).max() <= 10.0
    height = obs[:, s["self.height"]]
    assert height.min() >= 0.0 and height.max() <= 3.0
    distances = np.linalg.norm(obs[:, s["neighbors"]].reshape(-1, 6, 6)[:, :, :3], axis=-1)
    assert (np.diff(distances, axis=1) >= 0).all()  # nearest first, as the simulator orders them
    grid = obs[:, s["obstacles"]]
    assert grid.min() >= 0.0 and grid.max() <= EnvConfig.obstacle_sense_range


def test_bad_inputs_name_the_fix(exported, tmp_path):
    policy, path, _ = exported
    with pytest.raises(OnnxExportError, match="file_digest"):
        export_onnx(policy, tmp_path / "x.onnx", source_sha256="not-a-digest", action_meta=ACTION)
    with pytest.raises(OnnxExportError, match="action_metadata"):
        export_onnx(policy, tmp_path / "x.onnx", source_sha256=DIGEST, action_meta={"motors": 4})
    with pytest.raises(OnnxExportError, match=r"\(N, 64\)"):
        compare_with_torch(policy, path, np.zeros((3, 10), np.float32))
    with pytest.raises(ObservationError, match="num_neighbors"):
        recorded_observations(policy, EnvConfig(num_neighbors=2, drones_per_swarm=3), 10, seed=0)
