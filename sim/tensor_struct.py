"""Dataclasses of tensors treated as one value: clone, select environments, write environments back.

The environment keeps all of its state in such dataclasses with the environment as the first axis, so a
snapshot, a restore, or a reset of some environments is one generic operation rather than a list of
fields to keep in sync by hand. Host-side members (numpy arrays, such as the episode clocks) are
handled alike, so a struct may keep some of its state on the CPU and the rest on the device.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

import numpy as np
import torch

S = TypeVar("S")
Array = TypeVar("Array", torch.Tensor, np.ndarray)


def map_tensors(struct: S, fn: Callable[[Array], Array]) -> S:
    """A copy of `struct` with `fn` applied to every tensor and array, recursing into nested dataclasses."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(struct):
        value = getattr(struct, f.name)
        if isinstance(value, (torch.Tensor, np.ndarray)):
            changes[f.name] = fn(value)
        elif dataclasses.is_dataclass(value):
            changes[f.name] = map_tensors(value, fn)
    return dataclasses.replace(struct, **changes)


def clone(struct: S) -> S:
    return map_tensors(struct, lambda t: t.copy() if isinstance(t, np.ndarray) else t.clone())


def select(struct: S, rows: torch.Tensor) -> S:
    """Rows `rows` of the first axis of every tensor: a copy for an index tensor, a view for a slice."""
    return map_tensors(struct, lambda t: t[rows])


def assign(struct: Any, rows: torch.Tensor, source: Any) -> None:
    """Write `source` (as returned by `select`) into rows `rows` of `struct`, in place."""
    for f in dataclasses.fields(struct):
        value = getattr(struct, f.name)
        if isinstance(value, (torch.Tensor, np.ndarray)):
            value[rows] = getattr(source, f.name)
        elif dataclasses.is_dataclass(value):
            assign(value, rows, getattr(source, f.name))


def component_major(*components: torch.Tensor) -> torch.Tensor:
    """Stack components (...,) into a (..., C) tensor whose storage is component-major.

    Indexing is as for any (..., C) tensor, but each component is one contiguous run of memory, so a
    compiled step reads and writes whole vectors of drones instead of strided, scalar elements.
    """
    return torch.stack(components, dim=0).movedim(0, -1)


def as_component_major(t: torch.Tensor) -> torch.Tensor:
    """A component-major copy of a (..., C) tensor (see `component_major`)."""
    return component_major(*t.unbind(-1))
