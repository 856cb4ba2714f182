"""Policies: permutation invariance where promised, hover at initialisation, a critic that sees the
swarm, and normalisation statistics that match numpy's and travel with the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nanoswarm.policies import PolicyConfig, SwarmPolicy, count_parameters
from nanoswarm.policies.layers import Attention, mlp, widening_linear
from nanoswarm.policies.normalization import RunningNorm
from nanoswarm.sim.observation import ObservationLayout

LAYOUT = ObservationLayout(num_neighbors=4)


def permuted_neighbors(obs: torch.Tensor, order: list[int]) -> torch.Tensor:
    """The same observations with the neighbour slots reordered."""
    sl = LAYOUT.slices["neighbors"]
    block = obs[..., sl].reshape(*obs.shape[:-1], LAYOUT.num_neighbors, LAYOUT.neighbor_size)
    out = obs.clone()
    out[..., sl] = block[..., order, :].reshape(*obs.shape[:-1], -1)
    return out


@pytest.mark.parametrize("kind", ["attention", "deepsets"])
def test_actor_ignores_the_order_of_neighbours(kind):
    torch.manual_seed(0)
    policy = SwarmPolicy(LAYOUT, PolicyConfig(actor=kind))
    obs = torch.randn(5, 3, LAYOUT.size)
    a = policy.deterministic_action(obs)
    b = policy.deterministic_action(permuted_neighbors(obs, [2, 0, 3, 1]))
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("kind", ["attention", "deepsets", "mlp"])
def test_actor_reacts_to_its_neighbours_and_obstacles(kind):
    """Every block of the observation reaches the action (no input silently dropped)."""
    torch.manual_seed(1)
    policy = SwarmPolicy(LAYOUT, PolicyConfig(actor=kind))
    for p in policy.actor.mean.parameters():   # undo the near-constant initial head
        torch.nn.init.normal_(p, std=0.5)
    obs = torch.randn(4, 2, LAYOUT.size)
    base = policy.deterministic_action(obs)
    for block in ("self", "neighbors", "obstacles"):
        moved = obs.clone()
        moved[..., LAYOUT.slices[block]] += 1.0
        assert (policy.deterministic_action(moved) - base).abs().max() > 1e-4, block


@pytest.mark.parametrize("kind", ["attention", "deepsets", "mlp"])
def test_initial_policy_commands_hover_thrust_everywhere(kind):
    policy = SwarmPolicy(LAYOUT, PolicyConfig(actor=kind), hover_action=-0.2)
    action = policy.deterministic_action(torch.randn(8, 3, LAYOUT.size))
    assert float((action.detach() + 0.2).abs().max()) < 0.05


def test_lone_drone_layout_builds_and_acts():
    policy = SwarmPolicy(ObservationLayout(num_neighbors=0), PolicyConfig())
    sample = policy.act(torch.randn(6, 1, ObservationLayout(0).size))
    assert sample.action.shape == (6, 1, 4) and sample.value.shape == (6, 1)
    assert bool(torch.isfinite(sample.log_prob).all())


def test_swarm_critic_sees_drones_the_actor_does_not():
    """Changing drone 3's observation changes drone 0's value with the swarm critic, not with the local one."""
    torch.manual_seed(2)
    obs = torch.randn(2, 5, LAYOUT.size)
    other = obs.clone()
    other[:, 3] += 2.0
    swarm = SwarmPolicy(LAYOUT, PolicyConfig(critic="swarm_attention"))
    local = SwarmPolicy(LAYOUT, PolicyConfig(critic="local"))
    assert (swarm.value(obs)[:, 0] - swarm.value(other)[:, 0]).abs().max() > 1e-5
    assert torch.equal(local.value(obs)[:, 0], local.value(other)[:, 0])


def test_log_prob_matches_the_gaussian_density():
    torch.manual_seed(3)
    policy = SwarmPolicy(LAYOUT, PolicyConfig())
    obs = torch.randn(3, 2, LAYOUT.size)
    sample = policy.act(obs)
    log_prob, entropy, _ = policy.evaluate(obs, sample.action)
    mean = policy.actor(policy.obs_norm(obs).reshape(6, -1)).reshape(3, 2, 4)
    std = policy.actor.log_std.exp()
    manual = (-0.5 * ((sample.action - mean) / std) ** 2 - torch.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
    assert torch.allclose(log_prob, manual, atol=1e-5)
    assert torch.allclose(sample.log_prob, manual, atol=1e-5)
    assert torch.allclose(entropy, (0.5 + 0.5 * np.log(2 * np.pi) + torch.log(std)).sum().expand(3, 2))


def test_attention_actor_is_smaller_than_the_critic_and_sized_by_config():
    small = SwarmPolicy(LAYOUT, PolicyConfig(hidden=16, head=(32,)))
    big = SwarmPolicy(LAYOUT, PolicyConfig(hidden=64, head=(128, 128)))
    assert count_parameters(small.actor) < count_parameters(big.actor)


@pytest.mark.parametrize("queries, tokens", [(1, 6), (2, 2), (8, 8)])
def test_attention_equals_the_textbook_form_with_any_key_bias(queries, tokens):
    """The folded key and the value projection after the sum are exact rewrites; a key bias, which the
    module leaves out, cancels in the softmax."""
    torch.manual_seed(0)
    attention = Attention(16)
    key_bias = torch.randn(16)
    q, t = torch.randn(5, queries, 16), torch.randn(5, tokens, 16)
    keys = t @ attention.key.weight.T + key_bias
    scores = (attention.query(q) @ keys.transpose(-1, -2)) / 4.0
    textbook = torch.softmax(scores, dim=-1) @ attention.value(t)
    assert torch.allclose(attention(q, t), textbook, atol=1e-5)


def test_swarm_critic_equals_its_textbook_form():
    """The critic multiplies the attention's value projection into its head's first layer: an exact
    rewrite of head([own, attention(own, swarm)])."""
    torch.manual_seed(0)
    critic = SwarmPolicy(LAYOUT, PolicyConfig(critic="swarm_attention")).critic
    obs = torch.randn(3, 8, LAYOUT.size)
    mine = critic.encoder(obs)
    textbook = critic.head(torch.cat((mine, critic.attention(mine, mine)), dim=-1)).squeeze(-1)
    assert torch.allclose(critic(obs), textbook, atol=1e-5)


def test_widening_layers_store_their_weight_transposed_and_act_as_linear():
    """Only the memory order differs (it makes the weight gradient cheaper): values, gradients and the
    state dict are those of nn.Linear."""
    torch.manual_seed(0)
    widening = widening_linear(6, 32)
    plain = torch.nn.Linear(6, 32)
    plain.load_state_dict(widening.state_dict())
    assert widening.weight.stride() == (1, 32) and plain.weight.stride() == (6, 1)
    x = torch.randn(50, 6)
    for layer in (widening, plain):
        torch.tanh(layer(x)).square().sum().backward()
    assert torch.allclose(widening(x), plain(x), atol=1e-6)
    assert torch.allclose(widening.weight.grad, plain.weight.grad, atol=1e-5)
    assert mlp([6, 32, 32], "tanh")[0].weight.stride() == (1, 32)
    assert mlp([64, 32], "tanh")[0].weight.stride() == (64, 1)


def test_running_norm_matches_numpy_over_many_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 5)) * np.array([1, 10, 0.1, 1, 5])
    norm = RunningNorm(5)
    for chunk in np.array_split(data, 7):
        norm.update(torch.tensor(chunk, dtype=torch.float32))
    assert np.allclose(norm.mean.numpy(), data.mean(0), rtol=1e-4)
    assert np.allclose(norm.var.numpy(), data.var(0), rtol=1e-3)
    normed = norm(torch.tensor(data, dtype=torch.float32)).numpy()
    assert np.allclose(normed.mean(0), 0.0, atol=1e-3) and np.allclose(normed.std(0), 1.0, atol=1e-3)


def test_normalisation_state_travels_in_the_state_dict():
    policy = SwarmPolicy(LAYOUT, PolicyConfig())
    policy.obs_norm.update(torch.randn(100, LAYOUT.size) * 4 + 1)
    copy = SwarmPolicy(LAYOUT, PolicyConfig())
    copy.load_state_dict(policy.state_dict())
    obs = torch.randn(2, 3, LAYOUT.size)
    assert torch.equal(policy.deterministic_action(obs), copy.deterministic_action(obs))
    assert float(copy.obs_norm.count) == 100


def test_constant_feature_is_not_blown_up_when_it_starts_to_vary():
    norm = RunningNorm(1)
    norm.update(torch.full((50, 1), 0.5))
    assert float(norm(torch.tensor([[0.6]]))) == pytest.approx(10.0)   # clipped, not 1e7
    assert float(norm(torch.tensor([[0.5001]]))) == pytest.approx(0.01, rel=1e-3)


def test_transfer_between_equal_layouts_reproduces_the_policy():
    from nanoswarm.policies.transfer import transfer_weights
    torch.manual_seed(4)
    source = SwarmPolicy(LAYOUT, PolicyConfig())
    source.obs_norm.update(torch.randn(500, LAYOUT.size) * 3 + 2)
    target = SwarmPolicy(LAYOUT, PolicyConfig())
    assert transfer_weights(source, target) == []
    obs = torch.randn(3, 2, LAYOUT.size)
    assert torch.allclose(source.deterministic_action(obs), target.deterministic_action(obs))


def test_transfer_from_a_lone_drone_keeps_what_it_learned_about_flying():
    """A K = 0 policy moved to K = 4: self, obstacle and head weights and their normalisation carry over,
    the neighbour statistics start fresh; with neighbours that contribute nothing the actions agree."""
    from nanoswarm.policies.transfer import transfer_weights
    torch.manual_seed(5)
    lone = ObservationLayout(num_neighbors=0)
    source = SwarmPolicy(lone, PolicyConfig())
    source.obs_norm.update(torch.randn(500, lone.size) * 2 + 1)
    target = SwarmPolicy(LAYOUT, PolicyConfig())
    left = transfer_weights(source, target)
    # The actor's weights all fit (they are shared across neighbours); the critic's input layer does not.
    assert left == ["critic.encoder.0.weight", "obs_norm (neighbour slots beyond the source's)"]
    assert not any(name.startswith(("actor.self_encoder", "actor.head", "actor.obstacle_encoder")) for name in left)
    assert torch.equal(target.obs_norm.mean[LAYOUT.slices["self"]], source.obs_norm.mean[lone.slices["self"]])
    assert torch.equal(target.obs_norm.var[LAYOUT.slices["obstacles"]], source.obs_norm.var[lone.slices["obstacles"]])
    assert float(target.obs_norm.count) == 500
    with torch.no_grad():   # silence the neighbour summary: the swarm policy then flies as the lone one did
        target.actor.neighbor_attention.value.weight.zero_()
        target.actor.neighbor_attention.value.bias.zero_()
    obs = torch.randn(4, 1, lone.size)
    swarm_obs = torch.cat((obs[..., :19], torch.randn(4, 1, LAYOUT.num_neighbors * 6), obs[..., 19:]), dim=-1)
    assert torch.allclose(source.deterministic_action(obs), target.deterministic_action(swarm_obs), atol=1e-6)
