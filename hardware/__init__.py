"""Physical parameter sets, randomisation ranges and arenas, stored as YAML data with their sources.

Code never holds physical constants as literals: it loads them from here by name (or from a user's own
YAML file by path), so a parameter's value and its source stay together in one place.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TypeVar

from nanoswarm.config import ConfigError, load_config

T = TypeVar("T")


def hardware_dir(folder: str) -> Path:
    """The folder of one kind of hardware data: 'params', 'randomization' or 'arenas'."""
    return Path(str(resources.files("nanoswarm.hardware"))) / folder


def available(folder: str) -> list[str]:
    return sorted(p.stem for p in hardware_dir(folder).glob("*.yaml"))


def load_hardware(cls: type[T], folder: str, name_or_path: str, field: str) -> T:
    """Load dataclass `cls` from `folder/NAME.yaml`, or from a path ending in .yaml.

    `field` is the config field that named it, so an unknown name is reported against that field.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = hardware_dir(folder) / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"config field '{field}': unknown name '{name_or_path}'; choose one of "
                              f"{available(folder)} from hardware/{folder}/ or give a YAML path")
    return load_config(cls, path)
