"""Checkpoints: written atomically, refused on load when they do not fit this version of nanoswarm.

A checkpoint carries its schema version, the resolved training config, the observation layout, the
policy (normalisation statistics included) and, for resuming, the optimizer and trainer state. Writing
goes to a temporary file in the same folder, is flushed to disk, then renamed over the old file, so a
crash at any moment leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from nanoswarm.config import ConfigError, from_mapping, to_mapping
from nanoswarm.policies import PolicyConfig, SwarmPolicy
from nanoswarm.sim.observation import ObservationLayout

# 2: attention keys have no bias (it never changed an output: policies/layers.py); schema 1 files hold one.
CHECKPOINT_SCHEMA = 2
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "policies" / "pretrained"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or incompatible; the message says what to do."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"schema": CHECKPOINT_SCHEMA, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def policy_payload(policy: SwarmPolicy, hover_action: float) -> dict[str, Any]:
    """What any consumer of a policy needs: weights, normalisation, sizes, layout."""
    return {"policy": policy.state_dict(), "policy_config": to_mapping(policy.config),
            "layout": policy.layout.to_dict(), "hover_action": hover_action}


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint file by path, or a shipped one by name ('swarm8' is policies/pretrained/swarm8.pt)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / f"{path.stem}.pt"
    if not path.suffix and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))
    raise CheckpointError(f"checkpoint '{name_or_path}' does not exist; give a path or one of the shipped "
                          f"policies {names}")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file, turning every way it can be broken into a CheckpointError."""
    path = resolve_checkpoint(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint '{path}' is corrupt or not a nanoswarm checkpoint ({err}); "
                              "use an earlier checkpoint or retrain") from None
    if not isinstance(data, dict) or "schema" not in data:
        raise CheckpointError(f"checkpoint '{path}' is not a nanoswarm checkpoint (no schema field)")
    if data["schema"] != CHECKPOINT_SCHEMA:
        raise CheckpointError(f"checkpoint '{path}' has schema {data['schema']}, this nanoswarm reads schema "
                              f"{CHECKPOINT_SCHEMA}; use the nanoswarm version that wrote it or retrain")
    return data


def layout_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two layout descriptions."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: checkpoint {saved.get(k)!r}, here {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def load_policy(path: str | Path, expected: ObservationLayout | None = None) -> tuple[SwarmPolicy, dict[str, Any]]:
    """The policy stored in a checkpoint file, with the file's contents (see `policy_from_checkpoint`)."""
    data = read_checkpoint(path)
    return policy_from_checkpoint(data, path, expected), data


def policy_from_checkpoint(data: dict[str, Any], path: str | Path,
                           expected: ObservationLayout | None = None) -> SwarmPolicy:
    """The policy in checkpoint contents already read from `path`, checked against this version's
    observation layout and, when given, the layout of the environment it is about to control."""
    saved = data["layout"]
    layout = ObservationLayout(num_neighbors=int(saved.get("num_neighbors", -1)))
    diffs = layout_differences(saved, layout.to_dict())
    if diffs:
        raise CheckpointError(f"checkpoint '{path}' was written for another observation layout ("
                              + "; ".join(diffs) + "); retrain or export with the matching nanoswarm version")
    if expected is not None and expected != layout:
        diffs = layout_differences(saved, expected.to_dict())
        raise CheckpointError(f"checkpoint '{path}' does not fit this environment's observations ("
                              + "; ".join(diffs) + "); use an environment with num_neighbors="
                              f"{layout.num_neighbors}")
    try:
        config = from_mapping(PolicyConfig, data["policy_config"])
    except ConfigError as err:
        raise CheckpointError(f"checkpoint '{path}': {err}") from None
    policy = SwarmPolicy(layout, config, float(data.get("hover_action", 0.0)))
    policy.load_state_dict(data["policy"])
    return policy


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file: names the exact checkpoint an export or report came from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
