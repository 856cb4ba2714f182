"""Typed configuration: dataclasses filled from YAML, validated on load.

Every config in nanoswarm is a dataclass. `from_mapping` fills one from plain data (parsed YAML) and checks
names and types, so a typo or a wrong type fails at load time with the dotted path of the field, rather
than deep inside a training run. Range checks live in each dataclass's `validate()` and raise
`ConfigError` through `require`, which adds the field's path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def require(condition: bool, field: str, message: str) -> None:
    """Raise a ConfigError naming `field` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"config field '{field}': {message}")


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], path)
    if origin is typing.Literal:
        require(value in args, path, f"must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        require(isinstance(value, dict), path, f"must be a mapping, got {type(value).__name__}")
        return from_mapping(annotation, value, path)
    if origin in (tuple, list):
        require(isinstance(value, (list, tuple)), path, f"must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            require(len(value) == len(args), path, f"must have {len(args)} entries, got {len(value)}")
            return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        require(isinstance(value, dict), path, f"must be a mapping, got {value!r}")
        return dict(value)
    if annotation is float:
        require(isinstance(value, (int, float)) and not isinstance(value, bool), path,
                f"must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        require(isinstance(value, int) and not isinstance(value, bool), path,
                f"must be an integer, got {value!r}")
        return value
    if annotation is bool:
        require(isinstance(value, bool), path, f"must be true or false, got {value!r}")
        return value
    if annotation is str:
        require(isinstance(value, str), path, f"must be a string, got {value!r}")
        return value
    return value


def from_mapping(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    """Build dataclass `cls` from `data`, checking field names and types; then run `validate()`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{path}." if path else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"config field '{prefix}{unknown[0]}': unknown field; expected one of {sorted(fields)}")
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"config field '{prefix}{missing[0]}': required but missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as err:
            if path:
                raise ConfigError(str(err).replace("config field '", f"config field '{prefix}", 1)) from None
            raise
    return obj


def to_mapping(obj: Any) -> Any:
    """Plain-data form of a config (for writing the resolved config beside a run's outputs)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    return obj


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning parse errors into ConfigErrors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path) -> T:
    """Load dataclass `cls` from a YAML file."""
    try:
        return from_mapping(cls, load_yaml(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
