"""Specification of configuration loading: typed, validated on load, and every error names its field."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from nanoswarm.config import ConfigError, from_mapping, load_config, to_mapping
from nanoswarm.sim.arena import Arena, load_arena
from nanoswarm.sim.config import SCENARIOS, EnvConfig
from nanoswarm.sim.params import QuadParams, available_param_sets, load_params, load_randomization

SHIPPED_PARAMS = Path(str(resources.files("nanoswarm.hardware"))) / "params" / "crazyflie21_sysid.yaml"


def field_error(name: str) -> str:
    """The regex of an error message that names config field `name` (and not merely contains the word)."""
    return re.escape(f"config field '{name}'")


def params_yaml(tmp_path: Path, **changes) -> Path:
    """A copy of hardware/params/crazyflie21_sysid.yaml with some entries changed."""
    data = yaml.safe_load(SHIPPED_PARAMS.read_text())
    data.update(changes)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------ shipped files
@pytest.mark.parametrize("name", available_param_sets())
def test_every_shipped_parameter_set_loads_and_can_hover(name):
    quad = load_params(name)
    assert quad.name == name
    assert quad.thrust_to_weight > 1.0
    assert sum(quad.thrust_curve) == pytest.approx(1.0, abs=1e-3)


def test_randomization_ranges_load_and_can_fly():
    ranges = load_randomization()
    assert ranges.thrust_to_weight[0] > 1.0
    assert ranges.mass[0] <= load_params("crazyflie21_sysid").mass <= ranges.mass[1]


@pytest.mark.parametrize("name", ["room10", "lab4x3"])
def test_shipped_arenas_load(name):
    arena = load_arena(name)
    assert arena.name == name
    low, high = arena.flight_box()
    assert bool((low < high).all())


def test_a_copy_of_a_parameter_file_loads_by_path(tmp_path):
    assert load_params(str(params_yaml(tmp_path))) == load_params("crazyflie21_sysid")


# --------------------------------------------------------------------------------------- bad params
def test_negative_mass_fails_on_load_naming_mass(tmp_path):
    path = params_yaml(tmp_path, mass=-0.03)
    with pytest.raises(ConfigError, match=field_error("mass")):
        load_params(str(path))


@pytest.mark.parametrize("change, field", [
    ({"inertia": [9.4e-6, 0.0, 1.7e-5]}, "inertia"),
    ({"thrust_curve": [0.1, 0.2, 0.3]}, "thrust_curve"),
    ({"thrust_max": 0.05}, "thrust_max"),                     # four motors cannot lift 30 g
    ({"motor_tau_up": -0.01}, "motor_tau_up"),
    ({"inertia": [9.4e-6, 9.6e-6]}, "inertia"),               # a 3-vector with two entries
    ({"mass": "light"}, "mass"),
    ({"mass_kg": 0.03}, "mass_kg"),
], ids=["zero_inertia", "curve_not_normalised", "cannot_lift", "negative_tau", "short_vector", "string_mass",
        "unknown_field"])
def test_bad_parameter_files_fail_naming_the_field(tmp_path, change, field):
    with pytest.raises(ConfigError, match=field_error(field)):
        load_params(str(params_yaml(tmp_path, **change)))


def test_missing_required_parameter_fails_naming_it(tmp_path):
    data = yaml.safe_load(SHIPPED_PARAMS.read_text())
    del data["rotor_xy"]
    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=field_error("rotor_xy") + ".*missing"):
        load_params(str(path))


def test_unknown_parameter_set_name_lists_the_choices():
    with pytest.raises(ConfigError, match=field_error("params") + ".*crazyflie21_sysid"):
        load_params("crazyflie99")


def test_malformed_yaml_fails_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nmass: [0.03\ninertia: {")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(QuadParams, path)
    assert str(path) in str(err.value)


def test_yaml_that_is_not_a_mapping_fails(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(EnvConfig, path)


def test_missing_file_fails_naming_it(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(EnvConfig, path)


def test_bad_arena_fails_naming_the_field(tmp_path):
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "room": [4.0, 3.0, 2.5], "obstacle_cell": 1.0,
                                    "obstacle_cells": [5, 3], "flight_height": [0.4, 2.0]}))
    with pytest.raises(ConfigError, match=field_error("obstacle_cells")):
        load_config(Arena, path)


# ----------------------------------------------------------------------------------- environment
def test_default_environment_config_is_valid_and_round_trips():
    cfg = from_mapping(EnvConfig, {})
    assert from_mapping(EnvConfig, to_mapping(cfg)) == cfg


def test_environment_config_loads_from_yaml(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("num_envs: 4\ndrones_per_swarm: 5\nnum_neighbors: 2\nscenario: obstacles\n"
                    "obstacle_density: 0.3\nnoise:\n  position: 0.01\nformation_spacing: [0.6, 0.9]\n")
    cfg = load_config(EnvConfig, path)
    assert (cfg.num_envs, cfg.drones_per_swarm, cfg.num_neighbors, cfg.scenario) == (4, 5, 2, "obstacles")
    assert cfg.noise.position == 0.01 and cfg.noise.velocity == 0.01      # unset nested fields keep defaults
    assert cfg.formation_spacing == (0.6, 0.9)


def test_unknown_scenario_fails_naming_scenario():
    with pytest.raises(ConfigError, match=field_error("scenario")) as err:
        from_mapping(EnvConfig, {"scenario": "loop_the_loop"})
    for name in SCENARIOS:
        assert name in str(err.value)                            # the message lists the choices


@pytest.mark.parametrize("k, m", [(4, 4), (5, 4), (-1, 4)])
def test_neighbour_count_must_be_below_swarm_size(k, m):
    with pytest.raises(ConfigError, match=field_error("num_neighbors")):
        from_mapping(EnvConfig, {"drones_per_swarm": m, "num_neighbors": k})


@pytest.mark.parametrize("data, field", [
    ({"num_env": 8}, "num_env"),
    ({"noise": {"positon": 0.1}}, "noise.positon"),
], ids=["top_level", "nested"])
def test_unknown_field_fails_naming_it(data, field):
    with pytest.raises(ConfigError, match=field_error(field) + ".*unknown field"):
        from_mapping(EnvConfig, data)


@pytest.mark.parametrize("data, field", [
    ({"num_envs": "many"}, "num_envs"),
    ({"num_envs": 8.0}, "num_envs"),
    ({"num_envs": True}, "num_envs"),
    ({"downwash": "yes"}, "downwash"),
    ({"episode_s": "15"}, "episode_s"),
    ({"formation_spacing": [0.5]}, "formation_spacing"),
    ({"formation_spacing": 0.5}, "formation_spacing"),
    ({"mix": "hover"}, "mix"),
    ({"noise": {"motor": 1}}, "noise.motor"),
    ({"noise": 0.0}, "noise"),
    ({"formations": ["circle", 3]}, "formations[1]"),
], ids=["str_for_int", "float_for_int", "bool_for_int", "str_for_bool", "str_for_float", "short_tuple",
        "scalar_for_tuple", "str_for_tuple", "int_for_bool_nested", "scalar_for_section", "item_type"])
def test_wrong_type_fails_naming_the_field(data, field):
    with pytest.raises(ConfigError, match=field_error(field)):
        from_mapping(EnvConfig, data)


@pytest.mark.parametrize("data, field", [
    ({"obstacle_density": 0.3}, "obstacle_density"),                     # columns need scenario obstacles
    ({"scenario": "obstacles", "obstacle_density": 0.9}, "obstacle_density"),
    ({"physics_hz": 250.0, "control_hz": 100.0}, "physics_hz"),
    ({"mix": ["hover", "obstacles"]}, "mix"),
    ({"mix": []}, "mix"),
    ({"formations": ["triangle"]}, "formations"),
    ({"restitution": 1.5}, "restitution"),
    ({"noise": {"velocity": -0.1}}, "noise.velocity"),
    ({"throw": {"max_tilt_deg": 270.0}}, "throw.max_tilt_deg"),
    ({"rewards": {"proximity_range": 0.0}}, "rewards.proximity_range"),
    ({"device": "tpu"}, "device"),
    ({"num_envs": 0}, "num_envs"),
], ids=["density_without_obstacles", "density_too_high", "physics_not_multiple", "mix_obstacles", "mix_empty",
        "unknown_formation", "restitution", "nested_noise", "nested_throw", "nested_rewards", "device",
        "no_envs"])
def test_out_of_range_values_fail_naming_the_field(data, field):
    with pytest.raises(ConfigError, match=field_error(field)):
        from_mapping(EnvConfig, data)


def test_bad_environment_yaml_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("drones_per_swarm: 3\nnum_neighbors: 3\n")
    with pytest.raises(ConfigError, match=field_error("num_neighbors")) as err:
        load_config(EnvConfig, path)
    assert str(path) in str(err.value)
