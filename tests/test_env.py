"""Specification of the swarm environment (`nanoswarm.sim.env.SwarmEnv`) and its scenarios.

Covers hover through the whole step, scenario starts, determinism, snapshots, episode metrics, the
observation layout, downwash in flight, CPU/CUDA agreement and compiled/eager agreement.
"""

from __future__ import annotations

import pytest
import torch

from nanoswarm.sim import tensor_struct
from nanoswarm.sim.config import EnvConfig, NoiseConfig, ThrowConfig
from nanoswarm.sim.dynamics import action_for_thrust, hover_thrust, rotation_matrix
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.interactions import nearest_neighbors, pairwise
from nanoswarm.sim.observation import ObservationLayout

SCENARIOS = ["hover", "random_goals", "same_goal", "swap_goals", "formation", "dynamic_formation", "obstacles",
             "mix"]
METRIC_KEYS = ("success_rate", "collision_rate", "collisions_per_drone_minute", "final_distance_m", "time_in_air")


def hover_action(env: SwarmEnv) -> torch.Tensor:
    params = env.state.params
    return action_for_thrust(hover_thrust(params), params)


def random_actions(steps: int, shape: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=gen) * 2.0 - 1.0 for _ in range(steps)]


def scenario_config(scenario: str, arena: str = "room10", drones: int = 8, envs: int = 64, **overrides) -> EnvConfig:
    cfg = EnvConfig(num_envs=envs, drones_per_swarm=drones, num_neighbors=3, scenario=scenario, arena=arena,
                    obstacle_density=0.2 if scenario == "obstacles" else 0.0, noise=NoiseConfig.off(), seed=11,
                    **overrides)
    cfg.validate()
    return cfg


def place(env: SwarmEnv, env_row: int, pos, vel) -> None:
    """Put the drones of one environment at `pos` with `vel` (M, 3), through export and import."""
    rows = torch.tensor([env_row])
    part = env.export_envs(rows)
    part.state.drones.pos[0] = torch.as_tensor(pos, dtype=torch.float32)
    part.state.drones.vel[0] = torch.as_tensor(vel, dtype=torch.float32)
    env.import_envs(rows, part)


# ---------------------------------------------------------------------------------------------- hover
@pytest.mark.parametrize("envs, drones, randomize", [(1, 1, False), (2, 4, True)],
                         ids=["one_nominal_drone", "randomized_swarm"])
def test_hover_action_holds_altitude_for_5_s(env_config, envs, drones, randomize):
    """Scenario 'hover', noise and downwash off, every motor commanded its hover thrust through the
    thrust curve: each drone's height stays within 1 cm of its start for 5 s (500 control steps)."""
    cfg = env_config(num_envs=envs, drones_per_swarm=drones, num_neighbors=0, scenario="hover", downwash=False,
                     episode_s=6.0, randomize=randomize)
    env = SwarmEnv(cfg)
    env.reset()
    action = hover_action(env)
    z0 = env.state.drones.pos[..., 2].clone()
    worst = 0.0
    for _ in range(500):
        result = env.step(action)
        assert not bool(result.done.any())
        worst = max(worst, float((env.state.drones.pos[..., 2] - z0).abs().max()))
    assert worst < 0.01, f"height drifted by {worst:.4f} m"


# ------------------------------------------------------------------------------------------ scenarios
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("noise", [False, True], ids=["noise_off", "noise_on"])
def test_every_scenario_resets_to_finite_observations_of_the_layout_size(scenario, noise):
    cfg = scenario_config(scenario, envs=16)
    if noise:
        cfg.noise = NoiseConfig()
    env = SwarmEnv(cfg)
    obs = env.reset()
    assert obs.shape == (16, 8, env.obs_size)
    assert env.obs_size == ObservationLayout(3).size
    assert bool(torch.isfinite(obs).all())
    result = env.step(hover_action(env))
    assert result.observation.shape == (16, 8, env.obs_size) and bool(torch.isfinite(result.observation).all())
    assert result.reward.shape == (16, 8) and result.done.shape == (16,)


# The default room, and a small lab crowded with drones (where lattice sites are neighbours and swarms
# fill the flight box), with enough environments that rare placements show up.
SPACING_CASES = [("room10", 8, 128), ("lab4x3", 12, 1024)]


@pytest.mark.parametrize("arena, drones, envs", SPACING_CASES, ids=[f"{a}_{m}_drones" for a, m, _ in SPACING_CASES])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_starts_drones_at_least_30_cm_apart(scenario, arena, drones, envs):
    env = SwarmEnv(scenario_config(scenario, arena=arena, drones=drones, envs=envs))
    env.reset()
    pos = env.state.drones.pos
    gaps = torch.cdist(pos.double(), pos.double()) + torch.eye(drones, dtype=torch.float64) * 1e9
    closest = gaps.amin((1, 2))
    worst = int(closest.argmin())
    assert float(closest[worst]) >= 0.3, (
        f"environment {worst} starts two drones {float(closest[worst]):.3f} m apart")


@pytest.mark.parametrize("arena, drones, envs", SPACING_CASES, ids=[f"{a}_{m}_drones" for a, m, _ in SPACING_CASES])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_puts_starts_and_goals_inside_the_room(scenario, arena, drones, envs):
    """Every start and goal is a place a drone can be: inside the walls and below the ceiling by its
    collision radius, above the floor."""
    env = SwarmEnv(scenario_config(scenario, arena=arena, drones=drones, envs=envs))
    env.reset()
    high = torch.tensor(env.constants.room_high)
    low = torch.tensor((-high[0], -high[1], env.constants.collision_radius))
    for what, points in (("start", env.state.drones.pos), ("goal", env.state.goals)):
        outside = ((points < low - 1e-5) | (points > high + 1e-5)).any(-1)
        if bool(outside.any()):
            e, i = outside.nonzero()[0].tolist()
            pytest.fail(f"{int(outside.sum())} {what}s lie outside the room, e.g. environment {e}, drone {i} "
                        f"at {points[e, i].tolist()} (room interior {low.tolist()} to {high.tolist()})")


def test_swap_goals_are_a_permutation_of_the_starts():
    env = SwarmEnv(scenario_config("swap_goals", envs=32))
    env.reset()
    pos, goals = env.state.drones.pos, env.state.goals
    for e in range(32):
        match = torch.cdist(goals[e], pos[e]) < 1e-5                # goal i equals start j
        assert bool((match.sum(1) == 1).all()) and bool((match.sum(0) == 1).all())
        assert not bool(match.diagonal().any())                    # nobody stays where it is


def test_same_goal_gives_the_whole_swarm_one_goal_and_the_larger_success_radius():
    env = SwarmEnv(scenario_config("same_goal", envs=16))
    env.reset()
    goals = env.state.goals
    assert torch.equal(goals, goals[:, :1].expand_as(goals))
    assert torch.equal(env.state.success_radius, torch.full((16,), env.config.same_goal_success_radius))


def test_hover_starts_each_drone_within_25_cm_of_its_goal():
    env = SwarmEnv(scenario_config("hover", envs=32))
    env.reset()
    offset = (env.state.drones.pos - env.state.goals).abs()
    assert float(offset.max()) <= 0.25 + 1e-6


@pytest.mark.parametrize("arena", ["room10", "lab4x3"])
def test_obstacle_starts_and_goals_are_clear_of_every_column(arena):
    env = SwarmEnv(scenario_config("obstacles", arena=arena, drones=8, envs=64))
    env.reset()
    s = env.state
    centres = env.obstacle_grid.centres().reshape(-1, 2)
    clearance = env.constants.collision_radius
    assert int(s.occupancy.sum()) > 0
    for e in range(64):
        columns = centres[s.occupancy[e].reshape(-1)]
        radius = float(s.obstacle_radius[e])
        for what, points in (("start", s.drones.pos[e, :, :2]), ("goal", s.goals[e, :, :2])):
            surface = torch.cdist(points, columns) - radius
            assert float(surface.min()) > clearance, (
                f"environment {e}: a {what} is {float(surface.min()):.3f} m from a column surface")


def test_obstacle_density_sets_the_number_of_columns():
    env = SwarmEnv(scenario_config("obstacles", envs=16))
    env.reset()
    cells = env.obstacle_grid.cells[0] * env.obstacle_grid.cells[1]
    assert env.state.occupancy.reshape(16, -1).sum(1).tolist() == [round(0.2 * cells)] * 16


def test_dynamic_formation_changes_goals_after_each_goal_period():
    cfg = scenario_config("dynamic_formation", drones=4, envs=4, goal_switch_s=(0.2, 0.2), episode_s=1.0)
    env = SwarmEnv(cfg)
    env.reset()
    action = hover_action(env)
    history = [env.state.goals.clone()]
    for _ in range(45):
        env.step(action)
        history.append(env.state.goals.clone())
    # The goal period is 20 control steps; allow one step either way for the float comparison of times.
    for step in range(1, 19):
        assert torch.equal(history[step], history[0]), f"goals moved early, at step {step}"
    assert not torch.equal(history[21], history[0]), "goals did not change after the goal period"
    assert torch.equal(history[38], history[22]), "goals changed within the second period"
    assert not torch.equal(history[41], history[22]), "goals did not change after the second period"
    high = torch.tensor(env.constants.room_high)
    assert bool((history[-1].abs()[..., :2] <= high[:2]).all()) and bool((history[-1][..., 2] <= high[2]).all())


def test_the_last_goals_of_an_episode_are_held_for_a_whole_goal_period():
    """Goals every 0.2 s in a 1 s episode: they change at 0.2, 0.4 and 0.6 s, not at 0.8 s, which would
    leave 0.2 s to reach a new formation."""
    cfg = scenario_config("dynamic_formation", drones=4, envs=2, goal_switch_s=(0.2, 0.2), episode_s=1.0)
    env = SwarmEnv(cfg)
    env.reset()
    action = hover_action(env)
    history = [env.state.goals.clone()]
    for _ in range(cfg.episode_steps - 1):
        env.step(action)
        history.append(env.state.goals.clone())
    changes = [t for t in range(1, len(history)) if not torch.equal(history[t], history[t - 1])]
    assert len(changes) == 3 and all(abs(t - expected) <= 1 for t, expected in zip(changes, (20, 40, 60)))


def test_static_scenarios_keep_their_goals():
    env = SwarmEnv(scenario_config("formation", drones=4, envs=4, episode_s=1.0))
    env.reset()
    goals = env.state.goals.clone()
    action = hover_action(env)
    for _ in range(30):
        env.step(action)
    assert torch.equal(env.state.goals, goals)


# ---------------------------------------------------------------------------------------- determinism
def noisy_config(seed: int) -> EnvConfig:
    """Noise on, randomisation on, throws on, short episodes: every source of randomness in play."""
    cfg = EnvConfig(num_envs=3, drones_per_swarm=3, num_neighbors=2, scenario="mix", randomize=True,
                    throw=ThrowConfig(enabled=True, rates=1.0), episode_s=0.2, collision_spin_kick=(1.0, 2.0),
                    seed=seed)
    cfg.validate()
    return cfg


def rollout(env: SwarmEnv, actions: list[torch.Tensor]) -> tuple[list, list, int]:
    observations, rewards, resets = [], [], 0
    for action in actions:
        result = env.step(action)
        observations.append(result.observation.clone())
        rewards.append(result.reward.clone())
        resets += int(result.done.sum())
    return observations, rewards, resets


def test_same_seed_gives_the_same_rollout():
    actions = random_actions(50, (3, 3, 4), seed=1)
    a, b = SwarmEnv(noisy_config(5)), SwarmEnv(noisy_config(5))
    assert torch.equal(a.reset(), b.reset())
    obs_a, rew_a, resets = rollout(a, actions)
    obs_b, rew_b, _ = rollout(b, actions)
    assert resets >= 3, "the rollout should cross auto-resets"
    for t in range(50):
        assert torch.equal(obs_a[t], obs_b[t]), f"observations differ at step {t}"
        assert torch.equal(rew_a[t], rew_b[t]), f"rewards differ at step {t}"


def test_a_different_seed_gives_a_different_rollout():
    actions = random_actions(5, (3, 3, 4), seed=1)
    a, b = SwarmEnv(noisy_config(5)), SwarmEnv(noisy_config(6))
    assert not torch.equal(a.reset(), b.reset())
    assert not torch.equal(rollout(a, actions)[0][-1], rollout(b, actions)[0][-1])


def test_reset_with_a_seed_restarts_the_random_stream():
    env = SwarmEnv(noisy_config(5))
    first = env.reset(seed=9)
    rollout(env, random_actions(7, (3, 3, 4), seed=2))
    assert torch.equal(env.reset(seed=9), first)


# ------------------------------------------------------------------------------------------ snapshots
def test_restoring_a_snapshot_replays_exactly():
    env = SwarmEnv(noisy_config(3))
    env.reset()
    rollout(env, random_actions(7, (3, 3, 4), seed=3))            # mid-episode, past one auto-reset
    snap = env.snapshot()
    actions = random_actions(40, (3, 3, 4), seed=4)
    obs_a, rew_a, resets = rollout(env, actions)
    assert resets >= 3
    assert torch.equal(env.restore(snap), snap.observation)
    obs_b, rew_b, _ = rollout(env, actions)
    for t in range(40):
        assert torch.equal(obs_a[t], obs_b[t]), f"observations differ at step {t}"
        assert torch.equal(rew_a[t], rew_b[t]), f"rewards differ at step {t}"


def test_a_snapshot_is_a_copy_not_a_view():
    env = SwarmEnv(noisy_config(3))
    env.reset()
    snap = env.snapshot()
    pos = snap.state.drones.pos.clone()
    rollout(env, random_actions(3, (3, 3, 4), seed=5))
    assert torch.equal(snap.state.drones.pos, pos)


def test_imported_environments_continue_like_their_source(env_config):
    """export_envs/import_envs copy the whole state of some environments into others: afterwards the
    copies are equal, and with equal actions (noise off) they stay equal."""
    env = SwarmEnv(env_config(num_envs=3, drones_per_swarm=3, num_neighbors=2, scenario="random_goals",
                              episode_s=1.0))
    env.reset()
    rollout(env, random_actions(4, (3, 3, 4), seed=6))
    part = env.export_envs(torch.tensor([0]))
    env.import_envs(torch.tensor([2]), part)
    source = tensor_struct.select(env.state, torch.tensor([0]))
    copy = tensor_struct.select(env.state, torch.tensor([2]))
    flat_source, flat_copy = [], []
    tensor_struct.map_tensors(source, lambda t: flat_source.append(t) or t)
    tensor_struct.map_tensors(copy, lambda t: flat_copy.append(t) or t)
    assert len(flat_source) == len(flat_copy) > 10
    for a, b in zip(flat_source, flat_copy):
        assert torch.equal(a, b)
    assert torch.equal(env.observation[2], env.observation[0])
    for action in random_actions(30, (3, 3, 4), seed=7):
        action[2] = action[0]
        result = env.step(action)
        assert not bool(result.done.any())
        assert torch.equal(result.observation[2], result.observation[0])
        assert torch.equal(result.reward[2], result.reward[0])
    assert not torch.equal(env.observation[1], env.observation[0])


def test_exported_state_does_not_alias_the_environment(env_config):
    env = SwarmEnv(env_config())
    env.reset()
    part = env.export_envs(torch.tensor([1]))
    part.state.drones.pos += 1.0
    assert not torch.equal(env.state.drones.pos[1], part.state.drones.pos[0])


# ------------------------------------------------------------------------------------ episode metrics
def short_episodes(env_config, grace_s: float = 0.0) -> SwarmEnv:
    env = SwarmEnv(env_config(num_envs=2, drones_per_swarm=2, num_neighbors=1, scenario="hover", episode_s=0.1,
                              grace_s=grace_s))
    env.reset()
    return env


def test_episode_metrics_appear_exactly_when_episodes_end(env_config):
    env = short_episodes(env_config)
    action = hover_action(env)
    for episode in range(2):
        for step in range(1, 11):
            result = env.step(action)
            if step < 10:
                assert not bool(result.done.any()) and "episode" not in result.info, f"early end at step {step}"
                continue
            assert result.done.tolist() == [True, True]
            assert result.info["done_envs"].tolist() == [0, 1]
            assert result.info["final_observation"].shape == (2, 2, env.obs_size)
            metrics = result.info["episode"]
            for key in METRIC_KEYS:
                assert metrics[key].shape == (2,), key
                assert bool(torch.isfinite(metrics[key]).all()), key
            for key in ("success_rate", "collision_rate", "time_in_air"):
                assert bool(((metrics[key] >= 0) & (metrics[key] <= 1)).all()), key
            assert bool((metrics["collisions_per_drone_minute"] >= 0).all())
            assert bool((metrics["final_distance_m"] >= 0).all())
            # Hovering drones that start near their goals stay airborne, unharmed, and arrive.
            assert metrics["collision_rate"].tolist() == [0.0, 0.0]
            assert metrics["time_in_air"].tolist() == [1.0, 1.0]
            assert metrics["success_rate"].tolist() == [1.0, 1.0]
        assert int(env.state.steps.max()) == 0, "the finished episodes restart"


def test_a_forced_collision_raises_the_collision_rate(env_config):
    """Two drones placed almost touching and flying at each other in environment 0 (no grace period):
    both count one collision, the episode is no success; environment 1 is untouched."""
    env = short_episodes(env_config, grace_s=0.0)
    place(env, 0, pos=[[0.0, 0.0, 1.5], [0.13, 0.0, 1.5]], vel=[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    action = hover_action(env)
    for _ in range(10):
        result = env.step(action)
    metrics = result.info["episode"]
    assert metrics["collision_rate"].tolist() == [1.0, 0.0]
    assert metrics["collisions_per_drone"].tolist() == [1.0, 0.0]          # counted once, not every step
    assert metrics["drone_collisions_per_drone"].tolist() == [1.0, 0.0]
    assert metrics["collisions_per_drone_minute"][0].item() == pytest.approx(1.0 / (0.1 / 60.0), rel=1e-4)
    assert float(metrics["success_rate"][0]) == 0.0


def test_collisions_in_the_grace_period_are_not_counted(env_config):
    env = short_episodes(env_config, grace_s=0.05)
    place(env, 0, pos=[[0.0, 0.0, 1.5], [0.13, 0.0, 1.5]], vel=[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    action = hover_action(env)
    for _ in range(10):
        result = env.step(action)
    assert result.info["episode"]["collision_rate"].tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------------------ observations
@pytest.mark.parametrize("k", range(8))
def test_observation_layout_size_and_slices(k):
    layout = ObservationLayout(k)
    assert layout.size == 19 + 6 * k + 9
    slices = layout.slices
    blocks = [slices["self"], slices["neighbors"], slices["obstacles"]]
    assert blocks[0].start == 0 and blocks[-1].stop == layout.size
    for a, b in zip(blocks, blocks[1:]):
        assert a.stop == b.start                                   # contiguous, no overlap, no gap
    fields = [slices[f"self.{name}"] for name in ("rel_goal", "vel", "rot", "omega", "height")]
    assert [s.stop - s.start for s in fields] == [3, 3, 9, 3, 1]
    assert fields[0].start == 0 and fields[-1].stop == slices["self"].stop
    for a, b in zip(fields, fields[1:]):
        assert a.stop == b.start
    assert slices["neighbors"].stop - slices["neighbors"].start == 6 * k
    assert slices["obstacles"].stop - slices["obstacles"].start == 9


@pytest.mark.parametrize("k", [0, 1, 6])
def test_observation_layout_round_trips_through_its_dict(k):
    layout = ObservationLayout(k)
    assert ObservationLayout.from_dict(layout.to_dict()) == layout
    tampered = layout.to_dict()
    tampered["size"] += 1
    with pytest.raises(ValueError, match="layout"):
        ObservationLayout.from_dict(tampered)


@pytest.mark.parametrize("scenario", ["random_goals", "obstacles"])
def test_env_observation_follows_the_layout_with_noise_off(scenario):
    env = SwarmEnv(scenario_config(scenario, drones=5, envs=4))
    env.reset()
    gen = torch.Generator().manual_seed(8)
    for step in range(3):
        obs = env.observation if step == 0 else env.step(torch.rand(4, 5, 4, generator=gen) * 0.2 + 0.1).observation
        s = env.state
        d = s.drones
        sl = env.layout.slices
        assert torch.allclose(obs[..., sl["self.rel_goal"]], d.pos - s.goals, atol=1e-6)
        assert torch.allclose(obs[..., sl["self.vel"]], d.vel, atol=1e-6)
        assert torch.allclose(obs[..., sl["self.rot"]], rotation_matrix(d.quat).reshape(4, 5, 9), atol=1e-6)
        assert torch.allclose(obs[..., sl["self.omega"]], d.omega, atol=1e-6)
        assert torch.allclose(obs[..., sl["self.height"]], d.pos[..., 2:3], atol=1e-6)
        _, rel_pos, rel_vel = nearest_neighbors(pairwise(d.pos, d.vel), d.pos, d.vel, 3)
        expected = torch.cat((rel_pos, rel_vel), dim=-1).reshape(4, 5, 18)
        assert torch.allclose(obs[..., sl["neighbors"]], expected, atol=1e-5)
        grid = obs[..., sl["obstacles"]]
        if scenario == "random_goals":
            assert torch.equal(grid, torch.full_like(grid, env.config.obstacle_sense_range))
        else:
            assert float(grid.max()) <= env.config.obstacle_sense_range


def test_observation_latency_delays_what_the_policy_sees(env_config):
    actions = random_actions(8, (2, 3, 4), seed=9)
    plain = SwarmEnv(env_config())
    late_cfg = env_config()
    late_cfg.noise.observation_latency_steps = 2
    late = SwarmEnv(late_cfg)
    first = plain.reset()
    assert torch.equal(late.reset(), first)
    seen_plain = [first] + [plain.step(a).observation.clone() for a in actions]
    seen_late = [first] + [late.step(a).observation.clone() for a in actions]
    assert torch.equal(seen_late[1], first) and torch.equal(seen_late[2], first)
    for t in range(3, 9):
        assert torch.equal(seen_late[t], seen_plain[t - 2]), f"step {t}"


def test_actions_of_the_wrong_shape_or_not_finite_are_rejected(env_config):
    env = SwarmEnv(env_config())
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(2, 3, 3))
    action = torch.zeros(2, 3, 4)
    action[1, 2, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="environment 1, drone 2"):
        env.step(action)


# -------------------------------------------------------------------------------------- downwash
@pytest.mark.parametrize("downwash", [True, False])
def test_a_drone_below_another_sinks_at_the_documented_downwash(env_config, downwash):
    """Two hovering drones 0.3 m apart vertically: the lower one accelerates down at (6/17)(7 - 10 d)
    (the wake of a step acts during the next one), the upper one holds; with downwash off both hold."""
    env = SwarmEnv(env_config(num_envs=1, drones_per_swarm=2, num_neighbors=1, scenario="hover", downwash=downwash,
                              episode_s=1.0))
    env.reset()
    place(env, 0, pos=[[0.0, 0.0, 1.0], [0.0, 0.0, 1.3]], vel=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    action = hover_action(env)
    steps = 6
    for _ in range(steps):
        env.step(action)
    vz = env.state.drones.vel[0, :, 2]
    wake = 6.0 / 17.0 * (7.0 - 10.0 * 0.3) if downwash else 0.0
    expected = -wake * (steps - 1) * env.control_dt
    assert float(vz[0]) == pytest.approx(expected, rel=0.03, abs=1e-4)
    assert abs(float(vz[1])) < 1e-4


# ---------------------------------------------------------------------------------- CPU, CUDA, compile
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch.cuda.is_available() is False")
def test_cpu_and_cuda_rollouts_agree():
    """The same start (copied from the CPU environment, since the two devices' RNG streams differ) and
    the same actions, noise off: CPU and CUDA observations agree within 1e-4 over 50 steps."""
    def config(device: str) -> EnvConfig:
        cfg = EnvConfig(num_envs=4, drones_per_swarm=4, num_neighbors=3, scenario="obstacles", obstacle_density=0.3,
                        noise=NoiseConfig.off(), episode_s=5.0, device=device, seed=4)
        cfg.validate()
        return cfg

    cpu, cuda = SwarmEnv(config("cpu")), SwarmEnv(config("cuda"))
    cpu.reset()
    cuda.reset()
    rows = torch.arange(4)
    part = cpu.export_envs(rows)
    part.state = tensor_struct.map_tensors(part.state, lambda t: t.to("cuda"))
    part.observation = part.observation.to("cuda")
    cuda.import_envs(rows.to("cuda"), part)
    for action in random_actions(50, (4, 4, 4), seed=10):
        a = cpu.step(action)
        b = cuda.step(action.to("cuda"))
        assert torch.allclose(a.observation, b.observation.cpu(), atol=1e-4)
        assert torch.allclose(a.reward, b.reward.cpu(), atol=1e-4)


def test_compiled_and_eager_steps_agree():
    """`SwarmEnv(cfg, compile=True)` and the eager environment, same seed, noise on: the same
    observations (within 1e-4) over 10 steps."""
    def config() -> EnvConfig:
        cfg = EnvConfig(num_envs=2, drones_per_swarm=3, num_neighbors=2, scenario="random_goals", episode_s=1.0,
                        seed=12)
        cfg.validate()
        return cfg

    eager, compiled = SwarmEnv(config()), SwarmEnv(config(), compile=True)
    assert torch.equal(eager.reset(), compiled.reset())
    for action in random_actions(10, (2, 3, 4), seed=11):
        a, b = eager.step(action), compiled.step(action)
        assert torch.allclose(a.observation, b.observation, atol=1e-4)
        assert torch.allclose(a.reward, b.reward, atol=1e-4)


def test_observation_sees_new_goals_in_the_step_they_change():
    """When a dynamic formation switches, the same step's observation and state already use the new goals."""
    cfg = scenario_config("dynamic_formation", drones=4, envs=4, goal_switch_s=(0.2, 0.2), episode_s=1.0)
    env = SwarmEnv(cfg)
    env.reset()
    action = hover_action(env)
    rel_goal = env.layout.slices["self.rel_goal"]
    for step in range(1, 25):
        result = env.step(action)
        expected = env.state.drones.pos - env.state.goals
        assert torch.allclose(result.observation[..., rel_goal], expected, atol=1e-5), f"stale goal at step {step}"
    assert int(env.clock.next_goal_change[0]) == 40          # 0.2 s at 100 Hz, twice


def test_snapshot_restores_the_penalty_scale():
    env = SwarmEnv(scenario_config("hover", drones=4, envs=2))
    env.reset()
    env.set_penalty_scale(0.25)
    snap = env.snapshot()
    env.set_penalty_scale(1.0)
    env.restore(snap)
    assert float(env.penalty_scale) == 0.25


def test_the_host_clock_foretells_every_episode_end(env_config):
    """`ends_within(k)` counts exactly the episodes the next k steps end (several per environment when k
    spans episodes), and `done` always matches the device's own step counter."""
    env = SwarmEnv(env_config(num_envs=5, drones_per_swarm=2, num_neighbors=1, scenario="hover", episode_s=0.1))
    env.reset()
    env.stagger(torch.Generator().manual_seed(3))
    foretold = env.ends_within(25)
    action = hover_action(env)
    ended = 0
    for _ in range(25):
        result = env.step(action)
        ended += result.ended.size
        assert result.done.tolist() == [i in result.ended for i in range(5)]
        assert env.clock.steps.tolist() == env.state.steps.tolist()
    assert ended == foretold >= 2 * 5
