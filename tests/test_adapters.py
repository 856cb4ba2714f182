"""Gymnasium and PettingZoo adapters: the ecosystems' own checkers pass, and episode boundaries, seeding
and final observations follow those APIs' conventions over the batched core."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from pettingzoo.test import parallel_api_test

from nanoswarm.sim.adapters import SwarmGymEnv, SwarmParallelEnv, SwarmVectorEnv
from nanoswarm.sim.config import EnvConfig, NoiseConfig

M, K = 3, 2
EPISODE_STEPS = 20  # episode_s=0.2 at the default 100 Hz control rate


def small(**overrides) -> EnvConfig:
    """A swarm small and short enough that whole episodes take milliseconds."""
    fields = dict(num_envs=1, drones_per_swarm=M, num_neighbors=K, episode_s=0.2, scenario="mix", seed=0)
    fields.update(overrides)
    return EnvConfig(**fields)


def actions(count: int, shape: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(count)]


# --------------------------------------------------------------------------------------- Gymnasium
@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is:UserWarning")
def test_gym_env_passes_gymnasiums_checker():
    # The observation space is unbounded on purpose (velocities, rates); the checker only warns on it.
    check_env(SwarmGymEnv(small()), skip_render_check=True)


def test_gym_env_spaces_are_the_whole_swarm():
    env = SwarmGymEnv(small(num_envs=64))  # a batched config is narrowed to one swarm
    obs_size = env.core.layout.size
    assert env.core.num_envs == 1
    assert env.observation_space.shape == (M, obs_size) and env.observation_space.dtype == np.float32
    assert np.all(np.isinf(env.observation_space.low)) and np.all(np.isinf(env.observation_space.high))
    assert env.action_space.shape == (M, 4) and env.action_space.dtype == np.float32
    assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs in env.observation_space and info == {}
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float)
    assert terminated is False and truncated is False
    assert info["drone_rewards"].shape == (M,)
    assert reward == pytest.approx(float(info["drone_rewards"].mean()))


def test_gym_env_refuses_several_swarms():
    with pytest.raises(ValueError, match="SwarmVectorEnv"):
        SwarmGymEnv(small(), num_envs=4)


def test_same_seed_same_observations():
    def rollout(env: SwarmGymEnv, seed: int) -> list[np.ndarray]:
        obs, _ = env.reset(seed=seed)
        return [obs] + [env.step(a)[0] for a in actions(5, (M, 4))]

    config = small(noise=NoiseConfig.off())
    first = rollout(SwarmGymEnv(config), seed=7)
    env = SwarmGymEnv(config, seed=123)  # a different construction seed is overridden by reset's seed
    rollout(env, seed=8)
    second = rollout(env, seed=7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(rollout(env, seed=8)[0], first[0])


def test_truncation_after_episode_steps_returns_the_final_observation():
    env = SwarmGymEnv(small(noise=NoiseConfig.off()))
    assert env.config.episode_steps == EPISODE_STEPS
    env.reset(seed=3)
    for t, action in enumerate(actions(EPISODE_STEPS, (M, 4)), start=1):
        obs, _, terminated, truncated, info = env.step(action)
        assert terminated is False
        assert truncated is (t == EPISODE_STEPS)
        assert ("episode_metrics" in info) is truncated
    assert all(isinstance(v, float) for v in info["episode_metrics"].values())
    assert "success_rate" in info["episode_metrics"]
    # The truncation step shows the end of the old episode; reset() hands out the one the core started.
    first_of_next, _ = env.reset()
    assert not np.allclose(obs, first_of_next)
    np.testing.assert_array_equal(first_of_next, env.core.observation[0].numpy())
    # ... and the new episode runs its full length again.
    truncations = [env.step(a)[3] for a in actions(EPISODE_STEPS, (M, 4), seed=1)]
    assert truncations == [False] * (EPISODE_STEPS - 1) + [True]


def test_seeded_reset_after_truncation_restarts_deterministically():
    env = SwarmGymEnv(small(noise=NoiseConfig.off()))
    fresh, _ = env.reset(seed=5)
    for action in actions(EPISODE_STEPS, (M, 4)):
        env.step(action)
    again, _ = env.reset(seed=5)
    np.testing.assert_array_equal(fresh, again)


def test_returned_observations_are_copies():
    env = SwarmGymEnv(small())
    obs, _ = env.reset(seed=0)
    kept = obs.copy()
    obs[:] = 1e6
    env.step(np.zeros((M, 4), np.float32))
    np.testing.assert_array_equal(env.reset(seed=0)[0], kept)


# ------------------------------------------------------------------------------------ vector env
def test_vector_env_spaces_and_batched_step():
    envs = SwarmVectorEnv(small(num_envs=4))
    obs_size = envs.core.layout.size
    assert envs.num_envs == 4
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert envs.single_observation_space.shape == (M, obs_size)
    assert envs.single_action_space.shape == (M, 4)
    assert envs.observation_space.shape == (4, M, obs_size)
    assert envs.action_space.shape == (4, M, 4)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space and info == {}
    obs, rewards, terminations, truncations, info = envs.step(envs.action_space.sample())
    assert obs in envs.observation_space
    assert rewards.shape == (4,) and terminations.shape == (4,) and truncations.shape == (4,)
    assert terminations.dtype == np.bool_ and truncations.dtype == np.bool_
    assert not terminations.any() and not truncations.any() and "final_obs" not in info
    np.testing.assert_allclose(rewards, info["drone_rewards"].mean(axis=1), rtol=1e-6)


def test_vector_env_matches_the_gym_env_swarm_for_swarm():
    config = small(noise=NoiseConfig.off(), scenario="hover")
    single, batched = SwarmGymEnv(config), SwarmVectorEnv(config)  # num_envs=1: same random stream
    np.testing.assert_array_equal(single.reset(seed=2)[0], batched.reset(seed=2)[0][0])
    for action in actions(3, (M, 4)):
        np.testing.assert_array_equal(single.step(action)[0], batched.step(action[None])[0][0])


def test_vector_env_reports_final_observations_on_truncation():
    envs = SwarmVectorEnv(small(num_envs=3, noise=NoiseConfig.off()))
    envs.reset(seed=0)
    # desynchronise swarm 1 so it ends alone, five steps early (the device's counter and the host's clock)
    envs.core.state.steps[1] += 5
    envs.core.clock.steps[1] += 5
    for _ in range(EPISODE_STEPS - 6):
        assert not envs.step(envs.action_space.sample())[3].any()
    before = envs.core.observation.numpy().copy()
    obs, _, terminations, truncations, info = envs.step(envs.action_space.sample())
    np.testing.assert_array_equal(truncations, [False, True, False])
    assert not terminations.any()
    # Gymnasium's SAME_STEP layout: obs already restarted, the old episode's end in final_obs (masked).
    np.testing.assert_array_equal(info["_final_obs"], truncations)
    assert info["final_obs"].dtype == object and info["final_obs"][0] is None and info["final_obs"][2] is None
    final = info["final_obs"][1]
    assert final in envs.single_observation_space
    assert not np.allclose(final, obs[1])
    assert np.abs(final - before[1]).max() < np.abs(obs[1] - before[1]).max()  # continuous vs. jump
    np.testing.assert_array_equal(info["_final_info"], truncations)
    metrics = info["final_info"]["episode_metrics"]
    np.testing.assert_array_equal(info["final_info"]["_episode_metrics"], truncations)
    np.testing.assert_array_equal(metrics["_success_rate"], truncations)
    assert metrics["time_in_air"].shape == (3,)

    for _ in range(5):
        truncations = envs.step(envs.action_space.sample())[3]
    np.testing.assert_array_equal(truncations, [True, False, True])


def test_vector_env_takes_one_seed():
    envs = SwarmVectorEnv(small(num_envs=2, noise=NoiseConfig.off()))
    np.testing.assert_array_equal(envs.reset(seed=4)[0], envs.reset(seed=4)[0])
    with pytest.raises(TypeError, match="one stream"):
        envs.reset(seed=[1, 2])


# ------------------------------------------------------------------------------------- PettingZoo
def test_parallel_env_passes_pettingzoos_api_test():
    parallel_api_test(SwarmParallelEnv(small()), num_cycles=2 * EPISODE_STEPS)


def test_parallel_env_agents_are_drones():
    env = SwarmParallelEnv(small(noise=NoiseConfig.off()))
    assert env.possible_agents == [f"drone_{i}" for i in range(M)]
    assert env.metadata["name"] == "nanoswarm_v0"
    obs, infos = env.reset(seed=1)
    assert env.agents == env.possible_agents and set(infos) == set(env.agents)
    size = env.swarm.core.layout.size
    for agent in env.agents:
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent).shape == (4,)
        assert obs[agent].shape == (size,) and obs[agent] in env.observation_space(agent)
    joint, _ = SwarmGymEnv(small(noise=NoiseConfig.off())).reset(seed=1)
    np.testing.assert_array_equal(np.stack([obs[a] for a in env.possible_agents]), joint)

    for t in range(1, EPISODE_STEPS + 1):
        obs, rewards, terminations, truncations, infos = env.step(
            {a: env.action_space(a).sample() for a in env.agents})
        assert set(rewards) == set(env.possible_agents) and not any(terminations.values())
        assert all(isinstance(r, float) for r in rewards.values())
        assert set(truncations.values()) == {t == EPISODE_STEPS}
    assert env.agents == []
    assert "success_rate" in infos["drone_0"]["episode_metrics"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
